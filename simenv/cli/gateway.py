"""``simenv gateway``: the agent gateway in front of a policy (docs/gateway.md)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from simenv.cli.common import fail, out

__all__ = ["register"]


def gateway(
    model: Annotated[
        Path | None,
        typer.Option(help="A local model directory (save_pretrained): the in-process HF policy."),
    ] = None,
    upstream: Annotated[
        str | None,
        typer.Option(help="An OpenAI-compatible server (vLLM, SGLang) used token-in/token-out."),
    ] = None,
    tokenizer: Annotated[
        Path | None,
        typer.Option(help="With --upstream: the local tokenizer directory of the served model."),
    ] = None,
    served_model: Annotated[
        str | None, typer.Option(help="With --upstream: the model name the server serves.")
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; beyond loopback needs explicit credentials.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: a free one).")] = 8100,
    admin_key: Annotated[
        str | None,
        typer.Option(envvar="SIMENV_GATEWAY_ADMIN_KEY", help="The admin plane's bearer key."),
    ] = None,
    aws_access_key_id: Annotated[
        str | None,
        typer.Option(envvar="AWS_ACCESS_KEY_ID", help="The key id job-runtime calls sign with."),
    ] = None,
    aws_secret_access_key: Annotated[
        str | None,
        typer.Option(envvar="AWS_SECRET_ACCESS_KEY", help="The secret they sign with."),
    ] = None,
    job_arn: Annotated[
        str | None, typer.Option(help="Answer job-runtime calls of this job only (404 others).")
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="JSONL file that gets each rewarded or failed episode."),
    ] = None,
    max_turns: Annotated[int, typer.Option(min=1, help="Default turn cap of a trajectory.")] = 64,
    temperature: Annotated[
        float, typer.Option(min=0.0, help="The HF policy's default temperature.")
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Seeds each trajectory's sampling.")] = 0,
) -> None:
    """Serve a policy to agents that run elsewhere (OpenAI and SageMaker job-runtime wire)."""
    from simenv.server.auth import is_loopback
    from simenv.server.gateway import (
        AwsCredentials,
        Gateway,
        Limits,
        Policy,
        UpstreamSampler,
        load_tokenizer,
        make_server,
    )

    if (model is None) == (upstream is None):
        raise fail("give exactly one of --model DIR and --upstream URL")
    if not is_loopback(host) and not (admin_key and aws_access_key_id and aws_secret_access_key):
        raise fail(
            f"refusing to listen on {host}: beyond loopback the gateway needs an admin key and "
            "AWS credentials given explicitly (--admin-key, --aws-access-key-id, "
            "--aws-secret-access-key)"
        )
    try:
        if model is not None:
            from simenv.rollouts.policies import HF

            policy = Policy.from_hf(HF(str(model), temperature=temperature, seed=seed))
        else:
            if tokenizer is None:
                raise fail("--upstream needs --tokenizer DIR (the gateway owns tokenisation)")
            name = served_model or tokenizer.name
            sampler = UpstreamSampler(
                str(upstream), name, api_key=os.environ.get("UPSTREAM_API_KEY")
            )
            policy = Policy(load_tokenizer(tokenizer), sampler, name)
    except (ImportError, FileNotFoundError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    if (aws_access_key_id is None) != (aws_secret_access_key is None):
        raise fail("give both --aws-access-key-id and --aws-secret-access-key, or neither")
    aws = (
        AwsCredentials(aws_access_key_id, aws_secret_access_key)
        if aws_access_key_id and aws_secret_access_key
        else None
    )
    service = Gateway(
        policy,
        admin_key=admin_key,
        aws=aws,
        job_arn=job_arn,
        limits=Limits(max_turns=max_turns),
        out=out_file,
        seed=seed,
    )
    try:
        server = make_server(service, host, port)
    except (ValueError, OSError) as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc}") from None
    out.print(f"simenv gateway on {server.url} serving {policy.name} (Ctrl-C stops it)")
    if admin_key is None:
        out.print(f"admin key: {service.admin_key}", soft_wrap=True)
    if aws is None:
        out.print(
            f"AWS credentials: {service.aws.access_key_id} / {service.aws.secret_access_key}",
            soft_wrap=True,
        )
    sys.stdout.flush()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    out.print("stopped")


def register(app: typer.Typer) -> None:
    """Add ``gateway`` to ``app``."""
    app.command("gateway")(gateway)
