"""The agent gateway: an OpenAI-compatible and SageMaker job-runtime endpoint in front of a policy.

An agent that runs anywhere is trained by simenv by changing only where its model calls go.
Each call is a turn of a trajectory: the gateway renders the messages with the policy's chat
template, samples token-in/token-out, parses the tool calls and records the turn's token ids,
logprobs and policy version; the agent completes the trajectory and posts its reward, and the
trainer takes it as an ordinary :class:`~simenv.types.Episode`. docs/gateway.md is the contract.

- :mod:`~simenv.server.gateway.trajectories`: states, segments, episodes;
- :mod:`~simenv.server.gateway.policy`: the policy (HF in-process, or an upstream server);
- :mod:`~simenv.server.gateway.chat`: the chat-completions request and answer;
- :mod:`~simenv.server.gateway.sigv4`: the SigV4 verifier of the job-runtime path;
- :mod:`~simenv.server.gateway.service`: :class:`Gateway`, the logic without HTTP;
- :mod:`~simenv.server.gateway.http`: the HTTP server; :mod:`~simenv.server.gateway.errors`.
"""

from simenv.server.gateway.errors import GatewayError
from simenv.server.gateway.http import GatewayServer, make_server
from simenv.server.gateway.policy import HFSampler, Params, Policy, UpstreamSampler, load_tokenizer
from simenv.server.gateway.service import Gateway
from simenv.server.gateway.sigv4 import AwsCredentials
from simenv.server.gateway.trajectories import Limits, Trajectory, TrajectoryStore

__all__ = [
    "AwsCredentials",
    "Gateway",
    "GatewayError",
    "GatewayServer",
    "HFSampler",
    "Limits",
    "Params",
    "Policy",
    "Trajectory",
    "TrajectoryStore",
    "UpstreamSampler",
    "load_tokenizer",
    "make_server",
]
