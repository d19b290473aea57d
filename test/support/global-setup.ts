// Builds the images once before any test file runs (they are cached by
// content, so later runs only check fingerprints).
import { imageStore } from './env.js';

export default function setup(): void {
  const store = imageStore();
  for (const name of ['shell', 'node', 'python', 'exec']) store.getSync(name);
}
