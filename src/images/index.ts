export { ImageStore, SANDBOX_GID, SANDBOX_UID, type Image, type ImageStoreOptions } from './store.js';
