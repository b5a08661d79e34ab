// Judging a server's archiving settings (pure): what cairn-check says is
// wrong with archive_mode, wal_level, archive_library and archive_command,
// one line each, naming the setting and the fix (docs/postgres.md).

export interface ArchiveSettings {
  archive_mode: string;
  wal_level: string;
  archive_command: string;
  /** PostgreSQL 15+; '' when unset. */
  archive_library: string;
  /** The server is a standby (pg_is_in_recovery()). */
  inRecovery: boolean;
}

export interface SettingProblem {
  setting: string;
  message: string;
}

/** The problems with the settings; [] when archiving through cairn looks right. */
export function judgeArchiveSettings(s: ArchiveSettings): SettingProblem[] {
  const out: SettingProblem[] = [];
  const mode = s.archive_mode.trim().toLowerCase();
  if (mode === 'off') {
    out.push({ setting: 'archive_mode', message: 'archive_mode is off: no WAL is archived; set archive_mode = on and restart PostgreSQL' });
  } else if (s.inRecovery && mode !== 'always') {
    out.push({ setting: 'archive_mode', message: `archive_mode is ${mode} on a standby, which archives nothing until promoted; set archive_mode = always to archive here, or check the primary` });
  }
  if (s.wal_level.trim().toLowerCase() === 'minimal') {
    out.push({ setting: 'wal_level', message: 'wal_level is minimal: WAL cannot rebuild a backup; set wal_level = replica and restart PostgreSQL' });
  }
  if (s.archive_library.trim() !== '') {
    out.push({ setting: 'archive_library', message: `archive_library is "${s.archive_library}", so archive_command is not run; set archive_library = '' and archive_command = 'cairn-wal-push %p'` });
    return out;
  }
  const cmd = s.archive_command.trim();
  if (cmd === '' || cmd === '(disabled)') {
    out.push({ setting: 'archive_command', message: "archive_command is empty: WAL piles up in pg_wal; set archive_command = 'cairn-wal-push %p'" });
  } else if (!/(^|[\s/;&|])cairn-wal-push(\s|$)|(^|[\s/;&|])cairn\s+wal-push(\s|$)/.test(cmd)) {
    out.push({ setting: 'archive_command', message: `archive_command ${JSON.stringify(cmd)} does not run cairn-wal-push; set archive_command = 'cairn-wal-push %p'` });
  } else if (!/%p/.test(cmd)) {
    out.push({ setting: 'archive_command', message: `archive_command ${JSON.stringify(cmd)} does not pass the file (%p); set archive_command = 'cairn-wal-push %p'` });
  }
  return out;
}
