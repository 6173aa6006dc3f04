"""IT access requests: a read-only SOP domain (five lookups, one keyed by two arguments).

Systems come from a fixed catalog (the same system always answers the same); employees and
requests are drawn with a seeded ``random.Random``; :func:`decide` applies the SOP.
"""

from __future__ import annotations

import random
from typing import Any

from scenarios.sop_domains.common import spec, split_of

NAME = "access_requests"
SCENARIO_ID = "sop/AccessRequests-v1"
N_TASKS = 240
SEED = 23
SYSTEMS = {  # name: (classification, owner department)
    "payroll-db": ("restricted", "finance"),
    "hr-portal": ("confidential", "hr"),
    "crm": ("internal", "sales"),
    "wiki": ("public", "it"),
    "billing-api": ("confidential", "finance"),
    "build-farm": ("internal", "engineering"),
    "prod-k8s": ("restricted", "engineering"),
    "marketing-cms": ("public", "marketing"),
    "data-lake": ("confidential", "engineering"),
}
DEPARTMENTS = ("finance", "hr", "sales", "it", "engineering", "marketing")
CLEARANCE_NEEDED = {"public": 0, "internal": 1, "confidential": 2, "restricted": 3}
TRAINING_MAX_DAYS = 365
LEVEL_APPROVER = ("none", "manager", "system_owner", "ciso")

SOP = """
Logical Access Provisioning - Standard Operating Procedure SEC-112 (v4.2)

1. SCOPE
This procedure governs every request for access to a company system: which requests are
denied, which are deferred until the requester fixes something, which can be granted by the
service desk, and which must be escalated to a named approver. Apply the sections in order;
the first section that reaches a decision ends the procedure.

2. LOOKUPS
- get_employee(employee_id): employment type (employee or contractor), department, HR status
  (active, on_leave, terminated) and security clearance (0-4).
- get_system(system_name): data classification (public, internal, confidential, restricted)
  and owning department.
- get_training_record(employee_id): days since the security awareness training was completed.
- check_sod_conflict(employee_id, system_name): whether access would create a segregation of
  duties conflict with access the employee already holds.
- get_manager_approval(request_id): the line manager's approval (approved, pending, rejected).

3. ELIGIBILITY
3.1 A terminated employee is denied.
3.2 A requester on leave is deferred (decision defer) until they return.
3.3 The line manager's approval is required for every request. Rejected: deny. Pending:
    defer.
3.4 Contractors may never hold access to restricted systems: deny.
3.5 The requester's clearance must be at least the system's requirement: public 0,
    internal 1, confidential 2, restricted 3. Insufficient clearance: deny.

4. TRAINING
4.1 Security training older than 365 days defers the request, except read access to a
    public system, which needs no current training.

5. SEGREGATION OF DUTIES
5.1 A segregation of duties conflict always goes to compliance: decision escalate, approver
    compliance. This section comes before the approval matrix.

6. APPROVAL MATRIX
6.1 The approver level starts from the classification: public none, internal manager,
    confidential system_owner, restricted ciso.
6.2 Write access raises the level by one (none to manager, manager to system_owner,
    system_owner to ciso); admin access always needs the ciso.
6.3 A requester outside the owning department who asks for write or admin access needs at
    least the system_owner.
6.4 If the approver is none or manager the service desk grants the access (decision grant;
    the manager's approval already covers it). If the approver is system_owner or ciso the
    request is escalated (decision escalate) to that approver.

7. ACCESS EXPIRY
7.1 Granted or escalated access expires after 365 days; contractors' after 30 days; admin
    access after 90 days (contractor admin access: 30 days).
7.2 Denied and deferred requests have expiry_days 0 and approver none.

8. OUTPUT
decision (grant, deny, defer or escalate), approver (none, manager, system_owner, ciso or
compliance) and expiry_days (0, 30, 90 or 365).
"""

TOOLSPECS = [
    spec("get_employee", "HR record of an employee: employment type, department, status and "
         "security clearance.", employee_id=("string", "The employee id, e.g. EMP-40213.")),
    spec("get_system", "Catalog entry of a system: data classification and owning department.",
         system_name=("string", "The system's catalog name, e.g. crm.")),
    spec("get_training_record", "Days since the employee completed security training.",
         employee_id=("string", "The employee id, e.g. EMP-40213.")),
    spec("check_sod_conflict", "Whether granting this system to this employee creates a "
         "segregation of duties conflict.",
         employee_id=("string", "The employee id, e.g. EMP-40213."),
         system_name=("string", "The system's catalog name, e.g. crm.")),
    spec("get_manager_approval", "The line manager's approval of an access request.",
         request_id=("string", "The request id, e.g. REQ-7730.")),
]  # fmt: skip

MAPPING = f"""
id: {SCENARIO_ID}
task_id_column: request_id
split_column: split
answer: either
tools:
  get_employee:
    keys: [employee_id]
    returns: [employment_type, department, hr_status, clearance]
  get_system:
    keys: [system_name]
    returns: [classification, owner_department]
    not_found: "404 Not Found: no system in the catalog matches {{args}}."
  get_training_record:
    keys: [employee_id]
    returns: [training_days_ago]
  check_sod_conflict:
    keys: [employee_id, system_name]
    returns: [sod_conflict]
  get_manager_approval:
    keys: [request_id]
    returns: [manager_approval]
outputs:
  decision: "grant, deny, defer or escalate"
  approver: "none, manager, system_owner, ciso or compliance"
  expiry_days: "0, 30, 90 or 365"
"""

INPUTS = ("request_id", "employee_id", "system_name", "access_level", "justification")
OUTPUTS = ("decision", "approver", "expiry_days")
TOOL_COLUMNS = (
    "employment_type", "department", "hr_status", "clearance", "classification",
    "owner_department", "training_days_ago", "sod_conflict", "manager_approval",
)  # fmt: skip
JUSTIFICATIONS = (
    "Needed for quarter-end reporting.", "Joining the on-call rotation.",
    "Project handover from a colleague.", "Audit support request.",
    "New role starting next week.", "Temporary cover for a team member.",
)  # fmt: skip


def _stop(decision: str) -> dict[str, Any]:
    return {"decision": decision, "approver": "none", "expiry_days": 0}


def decide(r: dict[str, Any]) -> dict[str, Any]:
    """The SOP applied to one row: the gold outputs."""
    if r["hr_status"] == "terminated":
        return _stop("deny")
    if r["hr_status"] == "on_leave":
        return _stop("defer")
    if r["manager_approval"] == "rejected":
        return _stop("deny")
    if r["manager_approval"] == "pending":
        return _stop("defer")
    contractor = r["employment_type"] == "contractor"
    if contractor and r["classification"] == "restricted":
        return _stop("deny")
    if r["clearance"] < CLEARANCE_NEEDED[r["classification"]]:
        return _stop("deny")
    public_read = r["access_level"] == "read" and r["classification"] == "public"
    if r["training_days_ago"] > TRAINING_MAX_DAYS and not public_read:
        return _stop("defer")
    if contractor:
        expiry = 30
    elif r["access_level"] == "admin":
        expiry = 90
    else:
        expiry = 365
    if r["sod_conflict"]:
        return {"decision": "escalate", "approver": "compliance", "expiry_days": expiry}
    level = CLEARANCE_NEEDED[r["classification"]]
    if r["access_level"] == "write":
        level = min(level + 1, 3)
    elif r["access_level"] == "admin":
        level = 3
    if r["access_level"] != "read" and r["department"] != r["owner_department"]:
        level = max(level, 2)
    approver = LEVEL_APPROVER[level]
    decision = "grant" if level <= 1 else "escalate"
    return {"decision": decision, "approver": approver, "expiry_days": expiry}


def make_rows(n: int = N_TASKS, seed: int = SEED) -> list[dict[str, Any]]:
    """``n`` seeded access requests with their gold outputs."""
    rng = random.Random(seed)
    names = sorted(SYSTEMS)
    rows = []
    for i in range(n):
        system = rng.choice(names)
        classification, owner = SYSTEMS[system]
        r: dict[str, Any] = {
            "request_id": f"REQ-{7000 + 13 * i + rng.randint(0, 9)}",
            "employee_id": f"EMP-{40000 + 29 * i + rng.randint(0, 20)}",
            "system_name": system,
            "access_level": rng.choices(("read", "write", "admin"), (5, 4, 1))[0],
            "justification": rng.choice(JUSTIFICATIONS),
            "employment_type": rng.choices(("employee", "contractor"), (4, 1))[0],
            "department": owner if rng.random() < 0.5 else rng.choice(DEPARTMENTS),
            "hr_status": rng.choices(("active", "on_leave", "terminated"), (30, 1, 1))[0],
            "clearance": rng.choices((0, 1, 2, 3, 4), (1, 1, 3, 5, 4))[0],
            "classification": classification,
            "owner_department": owner,
            "training_days_ago": rng.choice((rng.randint(1, 365), rng.randint(1, 365),
                                             rng.randint(1, 365), rng.randint(366, 900))),
            "sod_conflict": rng.random() < 0.12,
            "manager_approval": rng.choices(("approved", "pending", "rejected"), (14, 1, 1))[0],
            "split": split_of(i, n),
        }  # fmt: skip
        rows.append({**r, **decide(r)})
    return rows
