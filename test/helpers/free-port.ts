// A free TCP port of 127.0.0.1, for a server a test starts on a port of its choosing (a field or a config file that
// takes no 0). The port is closed again before it is returned: another process could take it first, which on a test
// machine does not happen in practice.
import { createServer, type AddressInfo } from "node:net";

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject).listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
