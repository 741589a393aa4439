import type { Snapshot } from '../zfs/types.js';
import { type IncrementalPlan, type Plan, type UpToDatePlan, sourceKeepsOnlyBookmark } from './plan.js';

export interface DescribeContext {
  remoteHost: string;
  remoteDataset: string;
  localDataset: string;
  tag: string;
  rollback: boolean;
  parentMissing: string | undefined;
}

/** The dry-run report: what a run would send, create, roll back, hold and release. */
export function describePlan(plan: Plan, context: DescribeContext): string[] {
  const source = `${context.remoteHost}:${context.remoteDataset}`;
  const names = (snapshots: readonly Snapshot[]) => snapshots.map((snapshot) => `@${snapshot.name}`).join(', ');
  switch (plan.kind) {
    case 'conflict':
      return [`conflict (${plan.code}): ${plan.message}`];
    case 'up-to-date':
      if (sourceKeepsOnlyBookmark(plan)) return [bookmarkOnlyLine(plan, context), bookmarkOnlyHoldLine(plan, context)];
      return [
        `up to date: ${source}@${plan.base.remote.name} is the newest snapshot and ${context.localDataset} has it; nothing to send`,
        `would hold "${context.tag}" on ${source}@${plan.base.remote.name} and ${context.localDataset}@${plan.base.local.name} (repairing it if missing)`,
      ];
    case 'initial': {
      const lines: string[] = [];
      if (context.parentMissing) lines.push(`would create parent dataset ${context.parentMissing} (zfs create -p)`);
      lines.push(
        `would receive a full stream of ${source}@${plan.first.name} into the new dataset ${context.localDataset} (unmounted), then set readonly=on, canmount=noauto and com.sun:auto-snapshot=false; it holds "${context.tag}" on ${source}@${plan.first.name} before sending it`,
      );
      const rest = plan.incoming.slice(1);
      if (rest.length > 0)
        lines.push(
          `would then send ${source}@${plan.first.name}..@${plan.target.name} as one incremental stream (${rest.length} snapshot${rest.length === 1 ? '' : 's'}: ${names(rest)})`,
        );
      if (plan.skipped.length > 0)
        lines.push(
          `would not send ${plan.skipped.length} older snapshot${plan.skipped.length === 1 ? '' : 's'} outside keep (${names(plan.skipped)})`,
        );
      lines.push(`would hold "${context.tag}" on @${plan.target.name} on both sides`);
      return lines;
    }
    case 'incremental': {
      const lines: string[] = [];
      if (context.rollback) {
        lines.push(
          `would roll ${context.localDataset} back to @${plan.base.local.name}${plan.discard.length > 0 ? `, destroying ${names(plan.discard)}` : ''} (--rollback)${heldNote(plan.discard, context.tag)}`,
        );
      }
      if (plan.incoming.length > 0 && plan.base.viaBookmark) {
        lines.push(
          `would send ${source}#${plan.base.remote.name}..@${plan.target.name} into ${context.localDataset} incrementally from the bookmark (the common snapshot @${plan.base.local.name} is gone on ${context.remoteHost}) (${plan.incoming.length} snapshot${plan.incoming.length === 1 ? '' : 's'}: ${names(plan.incoming)})`,
        );
      } else if (plan.incoming.length > 0) {
        lines.push(
          `would send ${source}@${plan.base.remote.name}..@${plan.target.name} into ${context.localDataset} as one incremental stream (${plan.incoming.length} snapshot${plan.incoming.length === 1 ? '' : 's'}: ${names(plan.incoming)})`,
        );
      }
      if (sourceKeepsOnlyBookmark(plan))
        lines.push(bookmarkOnlyLine(plan, context), bookmarkOnlyHoldLine(plan, context));
      else lines.push(`would hold "${context.tag}" on @${plan.target.name} on both sides`);
      return lines;
    }
  }
}

function bookmarkOnlyLine(plan: UpToDatePlan | IncrementalPlan, context: DescribeContext): string {
  return `up to date: ${context.remoteHost}:${context.remoteDataset} keeps the common snapshot @${plan.base.local.name} only as the bookmark #${plan.base.remote.name} (the snapshot was destroyed there) and has nothing newer; the next snapshot will be sent from the bookmark`;
}

function bookmarkOnlyHoldLine(plan: UpToDatePlan | IncrementalPlan, context: DescribeContext): string {
  return `would hold "${context.tag}" on ${context.localDataset}@${plan.base.local.name} (repairing it if missing; a bookmark takes no hold)`;
}

/** Held snapshots a rollback would destroy: ours is released first, another tag refuses the rollback. */
function heldNote(discard: readonly Snapshot[], tag: string): string {
  const held = discard.filter((snapshot) => snapshot.userrefs > 0);
  if (held.length === 0) return '';
  return `; held: ${held.map((snapshot) => `@${snapshot.name}`).join(', ')} (a hold "${tag}" is released first; a hold of any other tag refuses the rollback)`;
}
