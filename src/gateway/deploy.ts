// A deploy, as both the HTTP route and the examples at start-up do it:
// unpack and validate, boot the candidate once (InitError refuses the
// deploy), then switch traffic to it.
import type { Readable } from 'node:stream';
import type { Dispatcher } from '../pool/dispatcher.js';
import type { Worker } from '../runtime/worker.js';
import type { DeployOutcome, FunctionStore } from '../store/store.js';

export async function deployFunction(store: FunctionStore, dispatcher: Dispatcher, name: string, body: Readable, query: Record<string, string>): Promise<DeployOutcome> {
  let checked: Worker | undefined;
  try {
    const outcome = await store.deploy(name, body, query, async (deployment) => {
      checked = await dispatcher.check(name, deployment);
    });
    if (outcome.created) dispatcher.activate(name, checked);
    return outcome;
  } catch (error) {
    // Checked, but the switch failed: that sandbox serves nobody.
    await (checked as Worker | undefined)?.destroy();
    throw error;
  }
}
