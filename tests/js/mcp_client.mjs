// An independent MCP client (the TypeScript SDK from npm) for context8's read API.
//
//   node mcp_client.mjs http <url>                   [options]
//   node mcp_client.mjs stdio <command> [args...]    [options]   (env is passed through)
//
// Options (before the transport):
//   --args <json>        per-tool arguments that override the built-in table, {"tool": {...}}
//   --subscribe <uri>    after the tool calls, resources/subscribe <uri>, print
//                        {"event":"subscribed"} and wait for notifications/resources/updated
//   --timeout <ms>       how long to wait for the update (default 10000)
//
// Lists the tools, calls every listed tool with valid arguments (the table below for the
// known tools, else derived from the tool's inputSchema), validates each structuredContent
// against the tool's advertised outputSchema with ajv (draft 2020-12) and prints one JSON
// summary line on stdout. Exit 0 when every call succeeded and validated, 1 otherwise.
import { performance } from "node:perf_hooks";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ResourceUpdatedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

/** Valid arguments for the tools we know; other tools get arguments from their inputSchema. */
const KNOWN_ARGS = {
  get_report: { symbol: "BTCUSDT" },
  get_reports: { symbols: ["BTCUSDT", "ETHUSDT"] },
  list_symbols: {},
  get_history: { symbol: "BTCUSDT" },
};

function parseArgv(argv) {
  const opts = { args: {}, subscribe: null, timeoutMs: 10000 };
  let i = 0;
  while (i < argv.length && argv[i].startsWith("--")) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (flag === "--args") opts.args = JSON.parse(value);
    else if (flag === "--subscribe") opts.subscribe = value;
    else if (flag === "--timeout") opts.timeoutMs = Number(value);
    else throw new Error(`unknown option ${flag}`);
    i += 2;
  }
  opts.transport = argv[i];
  opts.target = argv.slice(i + 1);
  if (!["http", "stdio"].includes(opts.transport) || opts.target.length === 0) {
    throw new Error("usage: mcp_client.mjs [options] http <url> | stdio <command> [args...]");
  }
  return opts;
}

/** A value that satisfies a (simple) JSON Schema, for the required arguments of unknown tools. */
export function sampleValue(name, schema = {}) {
  if (schema.examples?.length) return schema.examples[0];
  if (schema.default !== undefined && schema.default !== null) return schema.default;
  if (schema.const !== undefined) return schema.const;
  if (schema.enum?.length) return schema.enum[0];
  const variants = schema.anyOf ?? schema.oneOf;
  if (variants) {
    const concrete = variants.find((v) => v.type !== "null") ?? variants[0];
    return sampleValue(name, concrete);
  }
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  if (/symbols$/i.test(name) || (type === "array" && /symbol/i.test(name))) return ["BTCUSDT"];
  if (/symbol$/i.test(name)) return "BTCUSDT";
  switch (type) {
    case "integer":
    case "number":
      return schema.minimum ?? (schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + 1 : 1);
    case "boolean":
      return false;
    case "array":
      return [];
    case "object":
      return {};
    default:
      return "BTCUSDT";
  }
}

function argumentsFor(tool, overrides) {
  if (overrides[tool.name]) return overrides[tool.name];
  if (KNOWN_ARGS[tool.name]) return KNOWN_ARGS[tool.name];
  const schema = tool.inputSchema ?? {};
  const args = {};
  for (const name of schema.required ?? []) {
    args[name] = sampleValue(name, schema.properties?.[name]);
  }
  return args;
}

function connectTransport(opts) {
  if (opts.transport === "http") {
    return new StreamableHTTPClientTransport(new URL(opts.target[0]));
  }
  const [command, ...args] = opts.target;
  // The SDK passes only a few "safe" variables by default; the server needs C8_*.
  return new StdioClientTransport({ command, args, env: { ...process.env }, stderr: "inherit" });
}

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

async function main() {
  const opts = parseArgv(process.argv.slice(2));
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  addFormats(ajv);

  const updates = [];
  let onUpdate = () => {};
  const client = new Client({ name: "context8-ts-check", version: "1.0.0" });
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (note) => {
    updates.push({ uri: note.params.uri, at: Date.now() });
    onUpdate();
  });
  await client.connect(connectTransport(opts));

  const summary = {
    transport: opts.transport,
    server: client.getServerVersion(),
    capabilities: client.getServerCapabilities(),
    tools: [],
    ok: true,
  };
  const { tools } = await client.listTools();
  for (const tool of tools) {
    const args = argumentsFor(tool, opts.args);
    const entry = { name: tool.name, arguments: args, hasOutputSchema: Boolean(tool.outputSchema) };
    try {
      const started = performance.now();
      const result = await client.callTool({ name: tool.name, arguments: args });
      entry.ms = Math.round((performance.now() - started) * 10) / 10;
      entry.isError = Boolean(result.isError);
      entry.hasStructuredContent = result.structuredContent !== undefined;
      if (result.isError) entry.errorText = result.content?.[0]?.text;
      if (tool.outputSchema && result.structuredContent !== undefined) {
        const validate = ajv.compile(tool.outputSchema);
        entry.valid = validate(result.structuredContent);
        entry.schemaErrors = (validate.errors ?? []).slice(0, 10).map((e) => `${e.instancePath} ${e.message}`);
        entry.structuredKeys = Object.keys(result.structuredContent).sort();
        // The validator is not vacuous: an empty object must fail the same schema.
        entry.rejectsEmpty = !validate({});
      } else {
        entry.valid = !tool.outputSchema && !result.isError;
      }
    } catch (err) {
      entry.isError = true;
      entry.errorText = String(err?.message ?? err);
      entry.valid = false;
    }
    if (entry.isError || !entry.valid) summary.ok = false;
    summary.tools.push(entry);
  }

  if (opts.subscribe) {
    let timer;
    const waitForUpdate = new Promise((resolve) => {
      onUpdate = () => updates.some((u) => u.uri === opts.subscribe) && resolve(true);
      timer = setTimeout(() => resolve(false), opts.timeoutMs);
    }).finally(() => clearTimeout(timer)); // a pending timer would keep node alive
    try {
      await client.subscribeResource({ uri: opts.subscribe });
      const subscribedAt = Date.now();
      emit({ event: "subscribed", uri: opts.subscribe, at: subscribedAt });
      const received = await waitForUpdate;
      const first = updates.find((u) => u.uri === opts.subscribe);
      summary.subscription = {
        uri: opts.subscribe,
        received,
        updates,
        msToFirstUpdate: first ? first.at - subscribedAt : null,
      };
    } catch (err) {
      summary.subscription = { uri: opts.subscribe, received: false, error: String(err?.message ?? err) };
    }
    if (!summary.subscription.received) summary.ok = false;
  }

  const closing = performance.now();
  await client.close();
  summary.closeMs = Math.round(performance.now() - closing);
  emit(summary);
  process.exitCode = summary.ok ? 0 : 1;
}

main().catch((err) => {
  emit({ ok: false, fatal: String(err?.stack ?? err) });
  process.exitCode = 1;
});
