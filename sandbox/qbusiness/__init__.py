"""A local Amazon Q Business: the rest-json API boto3 speaks, SigV4-authenticated, answering as the signer.

Like the real service for an IAM-federated application (identityType AWS_IAM_IDP_OIDC), it learns who is
asking from the Email session tag of the web-identity credentials that signed the request, and answers
only from documents that user may read. Administrators (static keys) run the control plane and may not
chat; users may chat and may not touch the control plane.

Tests and `qbot sandbox` steer it through `faults` (throttling, errors, latency, first-call subscription
errors, conversation expiry) and observe it through `stats`.

The parts: `service` (the endpoint: SigV4, routing, authorization, faults and stats), `chat` (one ChatSync
turn), `controlplane` (applications, indices, retrievers, web experiences), `groups` (the PutGroup groups
document ACLs name), `conversations`, `retrieval` (the answer engine), `corpus` (the sample documents) and
`restjson` (the wire protocol, from botocore's service model).
"""

from sandbox.qbusiness.service import FeedbackRecord, QFaults, QStats, SandboxQBusiness

__all__ = ["FeedbackRecord", "QFaults", "QStats", "SandboxQBusiness"]
