export { describeStoreConformance } from './conformance.js'
export type { ConformanceHarness } from './conformance.js'
