#!/bin/sh
# Entrypoint of the PostgreSQL image (tools/images.sh): on the first start (no cluster in $PGDATA) makes
# one, then runs the server in the foreground. Runs as the image's `postgres` user; writes only to $PGDATA,
# /run/postgresql and /tmp, so the root filesystem can be read-only.
#
# The first start makes, in a scratch folder renamed into place only once all is done (a start that dies
# half-way leaves no half-made cluster):
#   - the `postgres` superuser, reachable only through the local socket as the OS user `postgres` (peer);
#   - $POSTGRES_USER (no superuser, no role or database creation), password from $POSTGRES_PASSWORD_FILE
#     (read from the file, never on a command line), stored as a SCRAM-SHA-256 verifier;
#   - $POSTGRES_DB, owned by $POSTGRES_USER.
# POSTGRES_USER_CREATEROLE=yes (the dev stack's database for Vault's database secrets engine): that user
# may also create roles, and any role may log in to $POSTGRES_DB by password (the logins Vault mints).
# Every start writes pg_hba.conf: $POSTGRES_USER to $POSTGRES_DB by scram-sha-256 from the networks in
# $POSTGRES_CLIENT_CIDRS (space-separated; default: the private ranges), nothing else over TCP.
set -eu
umask 077

PGDATA=${PGDATA:-/var/lib/postgresql/data/pgdata}
POSTGRES_DB=${POSTGRES_DB:-envvars}
POSTGRES_USER=${POSTGRES_USER:-envvars}
POSTGRES_CLIENT_CIDRS=${POSTGRES_CLIENT_CIDRS:-10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 fc00::/7}
POSTGRES_USER_CREATEROLE=${POSTGRES_USER_CREATEROLE:-no}
export PGDATA

die() { echo "postgres entrypoint: $*" >&2; exit 1; }
for ident in "$POSTGRES_DB" "$POSTGRES_USER"; do  # identifiers go into SQL and pg_hba.conf unquoted
  case $ident in
    postgres | '' | [!a-z_]* | *[!a-z0-9_]*) die "'$ident' is not a plain lower-case name other than postgres" ;;
  esac
done
for cidr in $POSTGRES_CLIENT_CIDRS; do
  case $cidr in
    *[!0-9a-fA-F.:/]* | /* | */ | */*/* | */*[!0-9]*) die "'$cidr' is not a network (a.b.c.d/n)" ;;
    */*) ;;
    *) die "'$cidr' is not a network (a.b.c.d/n)" ;;
  esac
done
case $POSTGRES_USER_CREATEROLE in
  yes) createrole=CREATEROLE; hba_users=all ;;
  no) createrole=NOCREATEROLE; hba_users=$POSTGRES_USER ;;
  *) die "POSTGRES_USER_CREATEROLE must be yes or no" ;;
esac
[ "$(id -u)" != 0 ] || die "refusing to run as root"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD_FILE:?the first start needs POSTGRES_PASSWORD_FILE (a file holding the password)}"
  [ -r "$POSTGRES_PASSWORD_FILE" ] || die "cannot read $POSTGRES_PASSWORD_FILE"
  password=$(cat "$POSTGRES_PASSWORD_FILE")
  [ ${#password} -ge 16 ] || die "the password in $POSTGRES_PASSWORD_FILE is shorter than 16 characters"
  case $password in *"
"*) die "the password in $POSTGRES_PASSWORD_FILE spans lines" ;; esac
  if [ -e "$PGDATA" ]; then  # an empty folder is replaced; anything else is not ours to touch
    [ -z "$(ls -A "$PGDATA")" ] || die "$PGDATA is not empty but holds no cluster: refusing to touch it"
    rmdir "$PGDATA" 2>/dev/null || die "cannot replace $PGDATA (a mount point?): make PGDATA a folder in the volume"
  fi
  echo "postgres entrypoint: no cluster in $PGDATA: initialising"
  scratch=$PGDATA.init
  rm -rf "$scratch"
  initdb --pgdata="$scratch" --username=postgres --auth-local=peer --auth-host=reject \
    --encoding=UTF8 --locale=C.UTF-8 --data-checksums >/dev/null
  # Single-user mode: no server listens while the role is made. The statements reach it on stdin (printf
  # is a shell builtin: the password is in no process's arguments); quotes in the password are doubled.
  quoted=$(printf '%s' "$password" | sed "s/'/''/g")
  # It goes on after a failed statement and exits 0: the last query says whether all took effect.
  made=$(printf '%s\n\n' \
    "SET password_encryption = 'scram-sha-256';" \
    "CREATE ROLE $POSTGRES_USER LOGIN NOSUPERUSER NOCREATEDB $createrole NOREPLICATION PASSWORD '$quoted';" \
    "CREATE DATABASE $POSTGRES_DB OWNER $POSTGRES_USER;" \
    "REVOKE ALL ON DATABASE $POSTGRES_DB FROM PUBLIC;" \
    "SELECT 'made' || '-ok' FROM pg_database d JOIN pg_authid r ON d.datdba = r.oid WHERE d.datname = '$POSTGRES_DB'
       AND r.rolname = '$POSTGRES_USER' AND r.rolpassword LIKE 'SCRAM-SHA-256\$%';" \
    | postgres --single -j -D "$scratch" -c log_min_error_statement=panic -c log_min_messages=warning postgres)
  unset password quoted
  case $made in *made-ok*) ;; *) die "could not make the role and database (above)" ;; esac
  mv "$scratch" "$PGDATA"
  echo "postgres entrypoint: cluster ready (database $POSTGRES_DB, owner $POSTGRES_USER)"
fi

# The server wants 0700; a volume's fsGroup handling may have opened it to the group.
chmod 0700 "$PGDATA"
{
  echo "# Written by the entrypoint at every start: do not edit (POSTGRES_CLIENT_CIDRS sets the networks)."
  echo "local all postgres peer"
  for cidr in $POSTGRES_CLIENT_CIDRS; do
    echo "host $POSTGRES_DB $hba_users $cidr scram-sha-256"
  done
} > "$PGDATA/pg_hba.conf"

exec postgres -D "$PGDATA" -c listen_addresses=0.0.0.0 -c port=5432 -c password_encryption=scram-sha-256 \
  -c unix_socket_directories=/run/postgresql "$@"
