// The version every tool reports and writes into what it stores.
export const CAIRN_VERSION = '0.1.0';
