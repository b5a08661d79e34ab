// cairn-restore-plan as a function: open the repositories, make the plan
// (core/restore), and describe it for a person.

import { loadKey, openRepositories, closeRepositories } from '@cairn/core/repo/repositories';
import { makePlanFromRepositories } from '@cairn/core/restore/load-plan';
import { describeTarget } from '@cairn/core/restore/target';
import type { RecoveryTarget, RestorePlan } from '@cairn/core/restore/plan-format';

export interface RestorePlanOptions {
  repos: string[];
  cluster: string;
  keyFile: string | undefined;
  keyCommand?: string | undefined;
  target: RecoveryTarget;
  set?: string;
}

export async function restorePlan(opts: RestorePlanOptions, ctx: { now: () => Date; signal: AbortSignal; env: NodeJS.ProcessEnv }): Promise<RestorePlan> {
  const key = await loadKey(opts, ctx.env, ctx.signal);
  const drivers = await openRepositories(opts.repos, ctx.env);
  try {
    return await makePlanFromRepositories({
      drivers,
      cluster: opts.cluster,
      key,
      target: opts.target,
      ...(opts.set === undefined ? {} : { set: opts.set }),
      now: ctx.now(),
      signal: ctx.signal,
    });
  } finally {
    await closeRepositories(drivers);
  }
}

/** The plan in a few lines for stderr: backup chain, target, WAL per timeline, warnings. */
export function formatPlanSummary(plan: RestorePlan): string {
  const b = plan.backup;
  const t = plan.target;
  const lines = [
    `plan from repository "${plan.repo}", cluster "${plan.cluster}", system ${plan.systemId} (PostgreSQL ${plan.pgMajor})`,
    `  backup    ${b.id} (${b.type}) on timeline ${b.timeline}: ${b.startLsn} at ${b.startTime} to ${b.stopLsn} at ${b.stopTime}`,
  ];
  if (plan.chain.length > 1) lines.push(`  chain     ${plan.chain.join(' → ')}`);
  const how = t.kind === 'latest' ? '' : `${t.kind === 'time' || t.kind === 'xid' || t.kind === 'lsn' ? (t.inclusive ? ', inclusive' : ', exclusive') : ''}, then ${t.action}`;
  lines.push(`  target    ${describeTarget(t)}${how}`);
  const via = plan.timelines.length > 1 ? `, following ${plan.timelines.join(' → ')}` : '';
  lines.push(`  timeline  ${plan.targetTimeline}${t.timeline === String(plan.targetTimeline) ? '' : ` (${t.timeline})`}${via}`);
  plan.wal.forEach((r, i) => {
    lines.push(`  ${i === 0 ? 'WAL      ' : '         '} timeline ${r.timeline}: ${r.from}${r.segments > 1 ? ` … ${r.to}` : ''} (${r.segments} segment${r.segments === 1 ? '' : 's'})`);
  });
  for (const w of plan.warnings) lines.push(`  warning: ${w}`);
  return lines.join('\n') + '\n';
}
