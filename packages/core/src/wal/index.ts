// Pure functions on PostgreSQL WAL: file names, LSNs, segment arithmetic, the
// segment page header and timeline history. No I/O here.

export {
  type WalFileKind,
  type WalFileName,
  parseWalFileName,
  isWalFileName,
  isSegmentName,
  timelineOf,
  sameTimeline,
  groupByTimeline,
  historyFileName,
} from './file-name.js';
export { MAX_LSN, parseLsn, formatLsn, isLsn } from './lsn.js';
export {
  DEFAULT_SEGMENT_SIZE,
  MIN_SEGMENT_SIZE,
  MAX_SEGMENT_SIZE,
  type LsnToSegmentOptions,
  isValidSegmentSize,
  checkSegmentSize,
  formatSegmentSize,
  segmentsPerLogId,
  segmentNumber,
  segmentName,
  nextSegmentName,
  segmentDirName,
  compareSegments,
  lsnToSegmentNumber,
  lsnToSegmentName,
  segmentStartLsn,
  segmentEndLsn,
} from './segment.js';
export {
  LONG_PAGE_HEADER_SIZE,
  type WalPageHeader,
  type SegmentHeaderExpectations,
  type StoredSegmentExpectations,
  readWalPageHeader,
  checkSegmentHeader,
  checkStoredSegment,
} from './page-header.js';
export {
  type TimelineHistoryEntry,
  type TimelineSpan,
  parseTimelineHistory,
  historyTimelines,
  timelineForLsn,
  timelineForSegment,
  timelinesForSegment,
} from './history.js';
