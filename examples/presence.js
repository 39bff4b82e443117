// Who is online in a room, kept from the runtime's presence frames the way Phoenix's client
// keeps it: `presence_state` gives the list, each `presence_diff` takes leaves out and puts
// joins in. The list maps a key (a user name) to the set of its entries' refs (one per tab or
// device). Served at /presence.js by the chat and realtime examples.
//
//   const online = AsenaPresence.fromState(frame.state);      // Map: key -> Set of refs
//   AsenaPresence.applyDiff(online, frame.joins, frame.leaves);
//   AsenaPresence.render(list, online, "name");                // <li data-name data-sessions>
window.AsenaPresence = {
  fromState(state) {
    return new Map(Object.entries(state).map(([key, { metas }]) => [key, new Set(metas.map((m) => m.phx_ref))]));
  },
  applyDiff(online, joins, leaves) {
    for (const [key, { metas }] of Object.entries(leaves)) {
      const refs = online.get(key);
      if (!refs) continue;
      metas.forEach((m) => refs.delete(m.phx_ref));
      if (refs.size === 0) online.delete(key);
    }
    for (const [key, { metas }] of Object.entries(joins)) {
      const refs = online.get(key) || new Set();
      metas.forEach((m) => refs.add(m.phx_ref));
      online.set(key, refs);
    }
  },
  // Lists the keys, sorted, as <li> with the key in data-<attribute> and the number of
  // sessions in data-sessions.
  render(list, online, attribute) {
    list.replaceChildren(...[...online.keys()].sort().map((key) => {
      const li = document.createElement("li");
      li.textContent = key;
      li.dataset[attribute] = key;
      li.dataset.sessions = online.get(key).size;
      return li;
    }));
  },
};
