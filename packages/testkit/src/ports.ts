// Free TCP ports on 127.0.0.1 for test servers (PostgreSQL, S3, proxies).
import { createServer } from 'node:net';

// Ports already handed out by this process: the kernel may offer a port again
// once our probe socket is closed, before the server that was meant to take it
// has bound it.
const handedOut = new Set<number>();

function probePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('could not read the probed port'))));
    });
  });
}

/**
 * A TCP port that was free on 127.0.0.1 a moment ago and that this process has
 * not handed out before. Another process can still take it before the caller
 * binds it; callers that start servers should retry on "address in use".
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await probePort();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free port found on 127.0.0.1 after 50 attempts');
}
