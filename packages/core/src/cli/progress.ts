// Progress on stderr when it is a terminal (bytes, rate, ETA), redrawn at
// most four times a second; nothing otherwise (docs/design.md §4.10).

import type { ToolContext } from './run.js';
import { formatBytes } from './format.js';

export interface Progress {
  add: (n: number) => void;
  total: (n: number) => void;
  done: () => void;
}

export function createProgress(ctx: ToolContext, what: string): Progress {
  const tty = (ctx.stderr as NodeJS.WriteStream).isTTY === true && ctx.settings['json'] !== true;
  const t0 = Date.now();
  let bytes = 0;
  let total = 0;
  let last = 0;
  const draw = (force = false) => {
    if (!tty) return;
    const now = Date.now();
    if (!force && now - last < 250) return;
    last = now;
    const secs = Math.max(0.001, (now - t0) / 1000);
    const rate = bytes / secs;
    const pct = total > 0 ? ` ${Math.min(100, (100 * bytes) / total).toFixed(0)}%` : '';
    const eta = total > 0 && rate > 0 ? ` ETA ${Math.max(0, Math.round((total - bytes) / rate))} s` : '';
    ctx.stderr.write(`\r${what}: ${formatBytes(bytes)}${total > 0 ? ` of ${formatBytes(total)}` : ''}${pct} ${formatBytes(rate)}/s${eta}   `);
  };
  return {
    add(n) {
      bytes += n;
      draw();
    },
    total(n) {
      total = n;
    },
    done() {
      if (tty) ctx.stderr.write('\r\x1b[K');
    },
  };
}
