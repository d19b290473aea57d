export { ImageStore, type CollectedImages, type Image, type ImageStoreOptions } from './store.js';
