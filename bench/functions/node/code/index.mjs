// Bench function: trivial; ?write=1 writes a file so the call gets a fresh root.
import { writeFileSync } from 'node:fs';
export const handler = async (event) => {
  if (event && event.write) writeFileSync('/tmp/out', 'x');
  return { ok: true };
};
export default {
  async fetch(request) {
    if (new URL(request.url).searchParams.has('write')) writeFileSync('/tmp/out', 'x');
    return new Response('ok');
  },
};
