export { ImageStore, type Image, type ImageStoreOptions } from './store.js';
