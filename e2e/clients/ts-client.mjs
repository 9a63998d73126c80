// Drives an MCP server with the official TypeScript SDK (@modelcontextprotocol/sdk) and prints
// one JSON line. Usage: node ts-client.mjs URL streamable-http|sse
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";

const [url, transport] = process.argv.slice(2);
const endpoint = new URL(url);
const channel = transport === "sse" ? new SSEClientTransport(endpoint) : new StreamableHTTPClientTransport(endpoint);
const client = new Client({ name: "ts-sdk-test", version: "1.0.0" });
await client.connect(channel);
const tools = await client.listTools();
const result = await client.callTool({ name: "search_documents", arguments: { query: "runbook" } });
console.log(JSON.stringify({
  client: "typescript-sdk",
  protocolVersion: channel.protocolVersion ?? null,
  serverVersion: client.getServerVersion()?.version ?? null,
  tools: tools.tools.map((t) => t.name).sort(),
  text: result.content[0].text,
  isError: Boolean(result.isError),
}));
await client.close();
