"""The administrator's commands: `qbot admin provision`, `qbot admin groups sync FILE`, `qbot admin channels …`
(`channels.py`), `qbot admin rekey` (`rekey.py`) and `qbot doctor`.

Defaults come from the same `QBOT_*` environment the bot reads, so an administrator with the bot's
environment loaded types little. AWS credentials: the default boto3 chain, or `--profile`/`QBOT_AWS_PROFILE`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from botocore.exceptions import NoCredentialsError

from bot.aws_clients import AWS_ERRORS, AdminAws, describe
from qbot.admin import channels, rekey

Env = Mapping[str, str]

#: SAML has no refresh token: ask for the longest session STS gives (12 hours); users sign in again after it.
DEFAULT_SAML_SESSION_SECONDS = 43200
#: the bot's default SAML entity id is the URL of this path (bot/config.py)
SP_METADATA_PATH = "/auth/saml/metadata"


def add_commands(commands: Any) -> None:
    """Add `admin` and `doctor` to the `qbot` sub-command parser."""
    admin = commands.add_parser("admin", help="provisioning and group sync against AWS, per-channel policies")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)

    provision = admin_commands.add_parser(
        "provision",
        help="create or update the IAM OIDC (or SAML) provider, the role and the Q Business application (idempotent)",
        description="Create what is missing and update what differs; a second run changes nothing. OIDC mode: "
        "--issuer and --client-id. SAML mode (Entra ID, Google): --saml-metadata and --public-url.",
    )
    provision.add_argument("--issuer", help="OIDC mode: the IdP's issuer URL [QBOT_OIDC_ISSUER]")
    provision.add_argument("--client-id", action="append", dest="client_ids",
                           help="OIDC mode: the IdP app's client id; repeatable [QBOT_OIDC_CLIENT_ID]")
    provision.add_argument("--saml-metadata", metavar="FILE|URL",
                           help="SAML mode: the IdP's federation metadata, a file or its URL "
                           "[QBOT_SAML_METADATA_URL or QBOT_SAML_METADATA_FILE]")
    provision.add_argument("--saml-provider-name", metavar="NAME",
                           help="SAML mode: the IAM SAML provider's name [the --name]")
    provision.add_argument("--public-url", metavar="URL",
                           help="SAML mode: the bot's public URL; the IdP posts to URL/auth/saml/acs [QBOT_PUBLIC_URL]")
    provision.add_argument("--sp-entity-id", metavar="ID",
                           help="SAML mode: qbot's entity id at the IdP "
                           "[QBOT_SAML_SP_ENTITY_ID, or the public URL + /auth/saml/metadata]")
    provision.add_argument("--session-seconds", type=int, metavar="SECONDS",
                           help="SAML mode: how long a sign-in lasts; the role's maximum session is raised to it "
                           f"[QBOT_SAML_SESSION_SECONDS, {DEFAULT_SAML_SESSION_SECONDS}]")
    provision.add_argument("--name", default="qbot", help="application display name; index and retriever follow it")
    provision.add_argument("--role-name", default="qbot-user", help="the IAM role users' credentials come from")
    provision.add_argument("--application-id", help="adopt this existing application instead of finding one by name")
    provision.add_argument("--email-domain", action="append", dest="email_domains", default=[], metavar="DOMAIN",
                           help="only users whose Email tag ends in @DOMAIN may use the role; repeatable [any]")
    provision.add_argument("--index-type", default="ENTERPRISE", choices=("ENTERPRISE", "STARTER"),
                           help="the Q Business index's type [%(default)s]")
    provision.add_argument("--subscription-type", default="Q_BUSINESS", choices=("Q_BUSINESS", "Q_LITE"),
                           help="what auto-subscription gives a new user")
    _add_aws_arguments(provision)
    provision.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    provision.add_argument("--timeout", type=float, default=1800.0, metavar="SECONDS",
                           help="longest wait for one resource to become ACTIVE")
    provision.add_argument("--poll-seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    provision.set_defaults(func=run_provision)

    groups = admin_commands.add_parser("groups", help="Q Business groups (what document ACLs name)")
    group_commands = groups.add_subparsers(dest="groups_command", required=True)
    sync = group_commands.add_parser(
        "sync",
        help="write the groups a CSV or JSON file describes with PutGroup (only those that changed)",
        description="FILE: JSON {group: [emails]} or CSV rows group,email.",
    )
    sync.add_argument("file", type=Path, metavar="FILE", help="the groups: JSON {group: [emails]} or CSV group,email")
    sync.add_argument("--application-id", help="[QBOT_Q_APP_ID]")
    sync.add_argument("--index-id", help="[QBOT_Q_INDEX_ID, or the application's only index]")
    sync.add_argument("--state", type=Path, default=Path("qbot-groups.state.json"),
                      help="where the record of what was written is kept [%(default)s]")
    sync.add_argument("--prune", action="store_true", help="delete groups qbot wrote earlier that the file omits")
    sync.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    _add_aws_arguments(sync)
    sync.set_defaults(func=run_group_sync)

    channels.add_commands(admin_commands)
    rekey.add_commands(admin_commands)

    doctor = commands.add_parser("doctor", help="check the configuration end to end; exit status 1 on a failure")
    doctor.set_defaults(func=run_doctor)


def _add_aws_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", help="[QBOT_AWS_REGION, us-east-1]")
    parser.add_argument("--profile", help="AWS profile with administrator credentials [QBOT_AWS_PROFILE]")


def _say(text: str) -> None:
    print(text, flush=True)


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _fail(command: str, message: str) -> int:
    print(f"qbot {command}: {message}", file=sys.stderr)
    return 1


def run_provision(args: argparse.Namespace, env: Env) -> int:
    from qbot.admin.provision import Provisioner, ProvisionError, Target

    oidc_flags = bool(args.issuer or args.client_ids)
    saml_source = args.saml_metadata or env.get("QBOT_SAML_METADATA_URL") or env.get("QBOT_SAML_METADATA_FILE")
    if args.saml_metadata and oidc_flags:
        return _fail("admin provision", "--saml-metadata (SAML mode) and --issuer/--client-id (OIDC mode) exclude "
                     "each other: a deployment federates one way. Pass one set.")
    if saml_source and not oidc_flags and not args.saml_metadata and env.get("QBOT_OIDC_ISSUER"):
        return _fail("admin provision", "the environment sets both QBOT_OIDC_ISSUER and QBOT_SAML_METADATA_*: "
                     "choose the mode with --saml-metadata FILE|URL or --issuer URL --client-id ID")
    saml = None
    if saml_source and not oidc_flags:
        from qbot.admin.saml_metadata import MetadataError

        try:
            saml = _saml_idp(args, env, saml_source)
        except MetadataError as err:
            return _fail("admin provision", f"the SAML metadata {saml_source} cannot be used: {err}")
        except ValueError as err:
            return _fail("admin provision", str(err))
    issuer = (args.issuer or env.get("QBOT_OIDC_ISSUER") or "").rstrip("/")
    client_ids = tuple(args.client_ids or ([env["QBOT_OIDC_CLIENT_ID"]] if env.get("QBOT_OIDC_CLIENT_ID") else []))
    if saml is None and (not issuer or not client_ids):
        return _fail("admin provision", "name the IdP: --issuer URL and --client-id ID (or QBOT_OIDC_ISSUER and "
                     "QBOT_OIDC_CLIENT_ID), or in SAML mode --saml-metadata FILE|URL")
    aws = AdminAws.from_env(env, region=args.region, profile=args.profile)
    target = Target(
        issuer="" if saml else issuer,
        client_ids=() if saml else client_ids,
        saml=saml,
        name=args.name,
        role_name=args.role_name,
        application_id=args.application_id,
        email_domains=tuple(args.email_domains),
        index_type=args.index_type,
        subscription_type=args.subscription_type,
    )
    try:
        session = aws.session()
        Provisioner(
            target,
            iam=aws.iam(session),
            qbusiness=aws.qbusiness(session),
            sts=aws.sts(session),
            region=aws.region,
            dry_run=args.dry_run,
            out=_say,
            progress=_progress,
            timeout_seconds=args.timeout,
            poll_seconds=args.poll_seconds,
        ).run()
    except NoCredentialsError:
        return _fail("admin provision", "no AWS credentials: configure them (aws configure, AWS_PROFILE, --profile)")
    except (ProvisionError, ValueError) as err:
        return _fail("admin provision", str(err))
    except AWS_ERRORS as err:
        operation = getattr(err, "operation_name", "") or "an AWS call"
        return _fail("admin provision", f"{operation} failed: {describe(err)}. Nothing after it was changed; "
                     "fix the cause and run the command again.")
    return 0


def _saml_idp(args: argparse.Namespace, env: Env, source: str) -> Any:
    """SAML mode's target: the metadata read (not yet checked: the provisioner does), the URLs and names."""
    import httpx

    from qbot.admin.plan import SamlIdp
    from qbot.admin.saml_metadata import is_url, parse_metadata, read_metadata

    if not is_url(source):
        source = str(Path(source).resolve())
    with httpx.Client(timeout=httpx.Timeout(15.0, connect=5.0), follow_redirects=True) as http:
        document = read_metadata(source, http)
    parse_metadata(document)
    public_url = (args.public_url or env.get("QBOT_PUBLIC_URL") or "").strip().rstrip("/")
    seconds = args.session_seconds or env.get("QBOT_SAML_SESSION_SECONDS") or DEFAULT_SAML_SESSION_SECONDS
    try:
        session_seconds = int(seconds)
    except ValueError:
        raise ValueError(f"QBOT_SAML_SESSION_SECONDS={seconds!r} is not a number of seconds") from None
    return SamlIdp(
        metadata=document,
        source=source,
        provider_name=args.saml_provider_name or args.name,
        public_url=public_url,
        sp_entity_id=args.sp_entity_id or env.get("QBOT_SAML_SP_ENTITY_ID") or public_url + SP_METADATA_PATH,
        session_seconds=session_seconds,
    )


def run_group_sync(args: argparse.Namespace, env: Env) -> int:
    from bot.groups import IndexGroups, find_index
    from qbot.admin.group_file import GroupFileError, GroupRecord, read_groups, sync_groups

    application_id = args.application_id or env.get("QBOT_Q_APP_ID") or ""
    if not application_id:
        return _fail("admin groups sync", "name the application: --application-id or QBOT_Q_APP_ID")
    aws = AdminAws.from_env(env, region=args.region, profile=args.profile)
    try:
        desired = read_groups(args.file)
        client = aws.qbusiness()
        index_id = args.index_id or env.get("QBOT_Q_INDEX_ID") or find_index(client, application_id)
        sync_groups(
            IndexGroups(client, application_id, index_id),
            GroupRecord(args.state, application_id, index_id),
            desired,
            dry_run=args.dry_run,
            prune=args.prune,
            out=_say,
        )
    except NoCredentialsError:
        return _fail("admin groups sync", "no AWS credentials: configure them (aws configure, AWS_PROFILE, --profile)")
    except (GroupFileError, ValueError) as err:
        return _fail("admin groups sync", str(err))
    except AWS_ERRORS as err:
        operation = getattr(err, "operation_name", "") or "an AWS call"
        return _fail("admin groups sync", f"{operation} failed: {describe(err)}. The groups written before it are "
                     f"recorded in {args.state}; run the command again to finish.")
    return 0


def run_doctor(args: argparse.Namespace, env: Env) -> int:
    from qbot.admin.doctor import run_doctor as doctor

    return doctor(env, _say)
