/**
 * The signals that stop a run the clean way: children stopped, holds kept, record written, exit 5. SIGHUP is
 * a terminal closing on a manual run; without a handler Node dies on it at once and leaves the transfer's
 * processes running. (Node resets an ignored SIGHUP to the default at start, so nohup never kept it alive.)
 */
export const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP'];
