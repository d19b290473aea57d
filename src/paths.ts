// Where the project lives, from the source tree or from dist/.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', ...(import.meta.url.includes('/dist/') ? ['..'] : []));
export const DEFAULT_LAUNCHER = join(PROJECT_ROOT, 'build', 'fnbox-launcher');
