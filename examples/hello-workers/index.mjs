// A Cloudflare-Workers-style function: the standard Request in, a Response out.
// Call it through /fn/hello-workers/<any path> to get the whole HTTP request.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const name = url.searchParams.get('name') ?? env.GREETING_NAME ?? 'world';
    return Response.json({ hello: name, method: request.method, path: url.pathname });
  },
};
