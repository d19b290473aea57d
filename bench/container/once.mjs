// Docker peer, cold and `docker exec`: load the bench function, call it once
// with the JSON event read from stdin, print the result.
import { handler } from '/code/index.mjs';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const result = await handler(input ? JSON.parse(input) : null, { invocationId: 'once', getRemainingTimeInMillis: () => 30_000 });
process.stdout.write(JSON.stringify(result));
