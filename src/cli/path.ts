const SBIN_DIRECTORIES = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** PATH with the sbin directories appended where missing, so zfs is found under cron's minimal PATH. */
export function withSbinPath(path: string | undefined): string {
  const entries = (path ?? '/usr/bin:/bin').split(':').filter((entry) => entry.length > 0);
  for (const directory of SBIN_DIRECTORIES) if (!entries.includes(directory)) entries.push(directory);
  return entries.join(':');
}
