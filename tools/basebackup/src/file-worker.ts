// Entry of the worker threads that back up or restore big files (see
// @cairn/core/backup/file-worker).
import { runFileWorker } from '@cairn/core/backup/file-worker-main';

runFileWorker();
