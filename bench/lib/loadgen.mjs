// A closed-loop HTTP load generator, run as its own process so it does not
// share an event loop with the gateway: `concurrency` keep-alive connections,
// each sending the next request when the last answer arrived.
// Usage: node loadgen.mjs '{"url":…,"method":"POST","body":"…","concurrency":8,"seconds":5,"warmupSeconds":1}'
// Prints {"latenciesMs":[…],"statuses":{…},"seconds":…}.
import http from 'node:http';

const options = JSON.parse(process.argv[2]);
const url = new URL(options.url);
const body = Buffer.from(options.body ?? '');
const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency });
const latencies = [];
const statuses = {};
let measuring = false;
let stopping = false;

function once() {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const request = http.request({ agent, host: url.hostname, port: url.port, path: url.pathname + url.search, method: options.method ?? 'POST', headers: { 'content-length': body.length, ...(options.headers ?? {}) } }, (response) => {
      response.resume();
      response.on('end', () => {
        if (measuring) {
          latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
          statuses[response.statusCode] = (statuses[response.statusCode] ?? 0) + 1;
        }
        resolve();
      });
    });
    request.on('error', () => {
      if (measuring) statuses.error = (statuses.error ?? 0) + 1;
      resolve();
    });
    request.end(body);
  });
}

async function loop() {
  while (!stopping) await once();
}

const loops = Array.from({ length: options.concurrency }, loop);
setTimeout(() => {
  measuring = true;
  const started = process.hrtime.bigint();
  setTimeout(async () => {
    measuring = false;
    stopping = true;
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    await Promise.all(loops);
    agent.destroy();
    process.stdout.write(JSON.stringify({ latenciesMs: latencies, statuses, seconds }));
  }, options.seconds * 1000);
}, (options.warmupSeconds ?? 1) * 1000);
