// Docker peer, warm: the function behind a small HTTP server in the
// container, the way OpenFaaS's watchdog serves a warm function.
import http from 'node:http';
import { handler } from '/code/index.mjs';

http.createServer(async (request, response) => {
  let body = '';
  for await (const chunk of request) body += chunk;
  try {
    const result = await handler(body ? JSON.parse(body) : null, { invocationId: 'warm', getRemainingTimeInMillis: () => 30_000 });
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(result));
  } catch (error) {
    response.writeHead(502).end(String(error));
  }
}).listen(8080, '0.0.0.0');
