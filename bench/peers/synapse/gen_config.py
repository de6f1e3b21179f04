"""Writes a Synapse homeserver.yaml for the benchmark: SQLite, 127.0.0.1 only, registration by
shared secret only, presence and every rate limit off. Usage: gen_config.py DIR PORT SECRET"""
import secrets
import sys
from pathlib import Path

d, port, secret = Path(sys.argv[1]).resolve(), int(sys.argv[2]), sys.argv[3]
unlimited = {"per_second": 1000000, "burst_count": 1000000}
limits = {
    "rc_message": unlimited,
    "rc_registration": unlimited,
    "rc_registration_token_validity": unlimited,
    "rc_login": {"address": unlimited, "account": unlimited, "failed_attempts": unlimited},
    "rc_joins": {"local": unlimited, "remote": unlimited},
    "rc_joins_per_room": unlimited,
    "rc_invites": {"per_room": unlimited, "per_user": unlimited, "per_issuer": unlimited},
    "rc_admin_redaction": unlimited,
    "rc_3pid_validation": unlimited,
    "rc_third_party_invite": unlimited,
    "rc_room_creation": unlimited,
    "rc_presence": {"per_user": unlimited},
    "rc_delayed_event_mgmt": unlimited,
    "rc_reports": unlimited,
    "rc_media_create": unlimited,
}


def y(v, indent=0):
    """A tiny YAML writer for dicts of scalars, lists and dicts (JSON scalars are valid YAML)."""
    import json

    pad = "  " * indent
    out = []
    for k, val in v.items():
        if isinstance(val, dict):
            out.append(f"{pad}{k}:")
            out.append(y(val, indent + 1))
        else:
            out.append(f"{pad}{k}: {json.dumps(val)}")
    return "\n".join(out)


config = f"""server_name: "localhost"
pid_file: "{d}/homeserver.pid"
listeners:
  - port: {port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: "{d}/homeserver.db"
log_config: "{d}/log.config"
media_store_path: "{d}/media_store"
signing_key_path: "{d}/localhost.signing.key"
registration_shared_secret: "{secret}"
macaroon_secret_key: "{secrets.token_hex(32)}"
form_secret: "{secrets.token_hex(32)}"
report_stats: false
enable_registration: false
trusted_key_servers: []
suppress_key_server_warning: true
presence:
  enabled: false
{y(limits)}
"""
(d / "homeserver.yaml").write_text(config)
(d / "log.config").write_text(
    f"""version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: {d}/homeserver.log
root:
  level: WARNING
  handlers: [file]
disable_existing_loggers: false
"""
)
print(d / "homeserver.yaml")
