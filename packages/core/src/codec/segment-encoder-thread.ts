// Entry of the segment encoder threads (see segment-encoder.ts).
import { runSegmentEncoderThread } from './segment-encoder.js';

runSegmentEncoderThread();
