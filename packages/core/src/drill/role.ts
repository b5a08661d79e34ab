// Which role a drill connects to its scratch server as (issue 14): a
// physical restore keeps the source's roles, so the OS user the scratch
// server runs as is often no role there at all (a Debian cluster's superuser
// is postgres, backed up by another OS user). A dump drill's fresh cluster
// gets this role from initdb -U, so any name works there.

export interface DrillRoleInput {
  /** --db-user (or CAIRN_DB_USER / the config file). */
  flag: string | undefined;
  /** The drill's environment: PGUSER is what psql would use. */
  env: NodeJS.ProcessEnv;
  /** The backup manifest's bootstrap superuser (oid 10), when recorded. */
  superuser: string | undefined;
  /** The OS user the scratch server runs as (--run-as, else whoever runs the drill). */
  osUser: string;
}

export interface DrillRole {
  name: string;
  /** Where the name came from, for the log line and error hints. */
  from: '--db-user' | 'PGUSER' | 'the backup manifest' | 'the OS user';
}

/** --db-user, else PGUSER, else the superuser the backup recorded, else the OS user. */
export function drillRole(i: DrillRoleInput): DrillRole {
  if (i.flag) return { name: i.flag, from: '--db-user' };
  const pguser = i.env['PGUSER'];
  if (pguser) return { name: pguser, from: 'PGUSER' };
  if (i.superuser) return { name: i.superuser, from: 'the backup manifest' };
  return { name: i.osUser, from: 'the OS user' };
}
