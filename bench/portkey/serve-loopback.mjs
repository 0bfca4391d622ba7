// Start Portkey's gateway listening on 127.0.0.1 only. Its start-up script
// (build/start-server.js of @portkey-ai/gateway 1.15.2) passes no hostname to
// @hono/node-server, so Node would otherwise listen on every interface.
// Arguments are passed through: --port=N and --headless.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (port, hostname, ...rest) {
  if (typeof port === "number" && hostname === undefined) {
    return listen.call(this, port, "127.0.0.1", ...rest);
  }
  return listen.call(this, port, hostname, ...rest);
};

await import("./node_modules/@portkey-ai/gateway/build/start-server.js");
