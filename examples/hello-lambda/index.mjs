// A Lambda-style function: JSON event in, JSON out.
export const handler = async (event, context) => ({
  message: `hello ${event?.name ?? 'world'}`,
  invocationId: context.invocationId,
  remainingMs: context.getRemainingTimeInMillis(),
});
