// The Codegen Project's configuration: a TypeScript client (payload and parameter models,
// WebSocket publish/subscribe functions, validation on) from the chat example's document.
// The document describes the server (its `send` operations are what the server sends), so
// the operations are reversed to get the client's side.
export default {
  inputType: 'asyncapi',
  inputPath: './gen/chat.asyncapi.json',
  language: 'typescript',
  generators: [
    { preset: 'payloads', outputPath: './gen/payloads', includeValidation: true },
    { preset: 'parameters', outputPath: './gen/parameters' },
    { preset: 'headers', outputPath: './gen/headers' },
    {
      preset: 'channels',
      outputPath: './gen/channels',
      protocols: ['websocket'],
      asyncapiReverseOperations: true,
    },
  ],
};
