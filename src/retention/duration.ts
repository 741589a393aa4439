const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };

/** "36h", "90m", "30d", "2w", "45s", "1.5d" (and a bare 0) to seconds; undefined when it is not such a duration. */
export function parseDuration(text: string): number | undefined {
  if (/^0+$/.test(text.trim())) return 0;
  const match = /^(\d+(?:\.\d+)?)\s*([smhdw])$/.exec(text.trim());
  if (!match) return undefined;
  return Math.round(Number(match[1]) * UNIT_SECONDS[match[2]!]!);
}
