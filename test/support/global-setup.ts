// Builds the images once before any test file runs (they are cached by
// content, so later runs only check fingerprints), and removes older builds
// of them: a checkout that runs the tests across host upgrades or image
// format changes piles them up (3.6 GB seen), and the images test copies
// the whole dir, which in the VMs then outlasts its timeout.
import { imageStore } from './env.js';

export default function setup(): void {
  const store = imageStore();
  const current = ['shell', 'node', 'python', 'exec'].map((name) => store.getSync(name));
  store.collect(current, { exclusive: true });
}
