// The query parameters an s3:// repository URL may carry. None is a secret, so
// messages may echo their values; any other parameter's value is redacted.

export const S3_URL_PARAMS: readonly string[] = [
  'endpoint',
  'region',
  'force-path-style',
  'connect-timeout-ms',
  'request-timeout-ms',
  'max-attempts',
  'conditional-writes',
  'requests',
  'sse',
  'sse-kms-key-id',
  'object-lock-mode',
  'object-lock-days',
];
