"""Insurance claim triage: a read-only SOP domain (five lookups, a three-field decision).

The generator draws claims with a seeded ``random.Random`` and :func:`decide` applies the SOP's
rules, in the SOP's order, to compute the gold outputs.
"""

from __future__ import annotations

import random
from typing import Any

from scenarios.sop_domains.common import spec, split_of

NAME = "claim_triage"
SCENARIO_ID = "sop/ClaimTriage-v1"
N_TASKS = 240
SEED = 11
CLAIM_TYPES = ("auto_collision", "auto_theft", "home_water", "home_fire", "liability")
NOT_COVERED_BY_BASIC = ("home_water", "liability")
AUTO_APPROVE_LIMIT = 3_000
LARGE_LOSS = 25_000
LATE_DAYS = 30

SOP = """
Claims Intake and Triage - Standard Operating Procedure CL-204 (rev. 7)

1. PURPOSE
This procedure tells a claims intake agent how to triage a newly reported property or casualty
claim: whether it is denied at intake, referred to the Special Investigations Unit (SIU),
pended for documents, approved automatically, or routed to a human adjuster, and how much the
estimated payout is. Apply the sections in order. The first section that ends the triage
decides the outcome; later sections are not applied.

2. INFORMATION YOU NEED
2.1 get_policy(policy_number): policy status, plan tier, coverage limit and deductible.
2.2 get_claim_history(policy_number): claims filed in the last 12 months and whether a prior
    fraud finding exists on the policy.
2.3 get_fraud_score(claim_id): the fraud model's score, 0-100.
2.4 get_incident_report(claim_id): whether a police report was filed and whether injuries
    were reported.
2.5 get_valuation(claim_id): the assessed value of the loss from the field appraiser.
Never estimate a value that a tool can provide.

3. COVERAGE CHECK
3.1 If the policy status is anything other than "active" (for example "lapsed" or
    "cancelled"), the decision is deny, the payout is 0 and the priority is low.
3.2 Basic-tier plans do not cover home_water or liability claims. Such a claim on a basic plan
    is denied: payout 0, priority low.

4. FRAUD SCREENING
4.1 Refer the claim to SIU (decision refer_siu) when the fraud score is 75 or higher.
4.2 Also refer it when the policy has a prior fraud finding and the fraud score is 50 or
    higher.
4.3 A referred claim has payout 0 and priority high. Do not tell the claimant about the
    referral.

5. DOCUMENTATION
5.1 An auto_theft claim without a police report cannot proceed: the decision is pend, the
    payout is 0 and the priority is normal.

6. PAYOUT ESTIMATE
6.1 The covered loss is the smallest of the claimed amount, the assessed value and the
    coverage limit.
6.2 The payout estimate is the covered loss minus the deductible, never below 0, in whole
    dollars (the inputs are whole dollars).
6.3 If the payout estimate is 0, deny the claim (below deductible) with priority low.

7. ROUTING
7.1 Senior review: route to senior_review when injuries were reported or the payout estimate
    is above 25,000.
7.2 Automatic approval: otherwise the claim is auto_approve when the payout estimate is at most
    3,000 and the policy has fewer than 2 claims in the last 12 months.
7.3 Everything else goes to standard_review.
7.4 Late reporting: when the claim was reported more than 30 days after the incident
    (days_to_report above 30), escalate the routing by one level: auto_approve becomes
    standard_review and standard_review becomes senior_review. senior_review stays.

8. PRIORITY (routed claims only: auto_approve, standard_review, senior_review)
8.1 auto_approve is low, standard_review is normal, senior_review is high.
8.2 Premium-tier plans raise the priority by one level (low to normal, normal to high, high to
    urgent).
8.3 A senior_review with injuries reported on a liability claim is always urgent.
Sections 3-5 set their own priority; section 8 does not change it.

9. OUTPUT
Report decision (deny, refer_siu, pend, auto_approve, standard_review or senior_review),
payout_amount (whole dollars; 0 unless the claim is routed) and priority (low, normal, high
or urgent).
"""

TOOLSPECS = [
    spec("get_policy", "Look up an insurance policy: status, plan tier, coverage limit and "
         "deductible.", policy_number=("string", "The policy number, e.g. POL-553201.")),
    spec("get_claim_history", "Claims history of a policy: claims in the last 12 months and "
         "whether a prior fraud finding exists.",
         policy_number=("string", "The policy number, e.g. POL-553201.")),
    spec("get_fraud_score", "The fraud model's score for a claim (0-100).",
         claim_id=("string", "The claim id, e.g. CLM-880412.")),
    spec("get_incident_report", "The incident report of a claim: police report filed, "
         "injuries reported.", claim_id=("string", "The claim id, e.g. CLM-880412.")),
    spec("get_valuation", "The field appraiser's assessed value of the loss, in dollars.",
         claim_id=("string", "The claim id, e.g. CLM-880412.")),
]  # fmt: skip

MAPPING = f"""
id: {SCENARIO_ID}
task_id_column: claim_id
split_column: split
answer: either
tools:
  get_policy:
    keys: [policy_number]
    returns: [policy_status, plan_tier, coverage_limit, deductible]
    not_found: "404 Not Found: no policy matches {{args}}."
  get_claim_history:
    keys: [policy_number]
    returns: [claims_last_12_months, prior_fraud_finding]
  get_fraud_score:
    keys: [claim_id]
    returns: [fraud_score]
  get_incident_report:
    keys: [claim_id]
    returns: [police_report_filed, injuries_reported]
  get_valuation:
    keys: [claim_id]
    returns: [assessed_value]
outputs:
  decision: "deny, refer_siu, pend, auto_approve, standard_review or senior_review"
  payout_amount: "Whole dollars; 0 unless the claim is routed."
  priority: "low, normal, high or urgent"
"""

INPUTS = ("claim_id", "policy_number", "claim_type", "claimed_amount", "days_to_report")
OUTPUTS = ("decision", "payout_amount", "priority")
TOOL_COLUMNS = (
    "policy_status", "plan_tier", "coverage_limit", "deductible", "claims_last_12_months",
    "prior_fraud_finding", "fraud_score", "police_report_filed", "injuries_reported",
    "assessed_value",
)  # fmt: skip
LEVELS = ("low", "normal", "high", "urgent")


def decide(r: dict[str, Any]) -> dict[str, Any]:
    """The SOP applied to one row: the gold outputs."""
    if r["policy_status"] != "active":
        return {"decision": "deny", "payout_amount": 0, "priority": "low"}
    if r["plan_tier"] == "basic" and r["claim_type"] in NOT_COVERED_BY_BASIC:
        return {"decision": "deny", "payout_amount": 0, "priority": "low"}
    if r["fraud_score"] >= 75 or (r["prior_fraud_finding"] and r["fraud_score"] >= 50):
        return {"decision": "refer_siu", "payout_amount": 0, "priority": "high"}
    if r["claim_type"] == "auto_theft" and not r["police_report_filed"]:
        return {"decision": "pend", "payout_amount": 0, "priority": "normal"}
    covered = min(r["claimed_amount"], r["assessed_value"], r["coverage_limit"])
    payout = max(covered - r["deductible"], 0)
    if payout == 0:
        return {"decision": "deny", "payout_amount": 0, "priority": "low"}
    if r["injuries_reported"] or payout > LARGE_LOSS:
        route = "senior_review"
    elif payout <= AUTO_APPROVE_LIMIT and r["claims_last_12_months"] < 2:
        route = "auto_approve"
    else:
        route = "standard_review"
    if r["days_to_report"] > LATE_DAYS:
        route = {"auto_approve": "standard_review"}.get(route, "senior_review")
    level = {"auto_approve": 0, "standard_review": 1, "senior_review": 2}[route]
    if r["plan_tier"] == "premium":
        level += 1
    if route == "senior_review" and r["injuries_reported"] and r["claim_type"] == "liability":
        level = 3
    return {"decision": route, "payout_amount": payout, "priority": LEVELS[level]}


def make_rows(n: int = N_TASKS, seed: int = SEED) -> list[dict[str, Any]]:
    """``n`` seeded claims with their gold outputs."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        claimed = rng.choice((rng.randint(400, 4_000), rng.randint(2_000, 20_000),
                              rng.randint(15_000, 60_000)))  # fmt: skip
        r: dict[str, Any] = {
            "claim_id": f"CLM-{880000 + 37 * i + rng.randint(0, 30)}",
            "policy_number": f"POL-{550000 + 53 * i + rng.randint(0, 40)}",
            "claim_type": rng.choice(CLAIM_TYPES),
            "claimed_amount": claimed,
            "days_to_report": rng.choice(
                (rng.randint(0, 30), rng.randint(0, 30), rng.randint(31, 90))
            ),
            "policy_status": rng.choices(("active", "lapsed", "cancelled"), (20, 1, 1))[0],
            "plan_tier": rng.choices(("basic", "standard", "premium"), (1, 2, 2))[0],
            "coverage_limit": rng.choice((10_000, 25_000, 50_000, 100_000)),
            "deductible": rng.choice((250, 500, 1_000, 2_500)),
            "claims_last_12_months": rng.choices((0, 1, 2, 3), (5, 3, 2, 1))[0],
            "prior_fraud_finding": rng.random() < 0.15,
            "fraud_score": rng.choice(
                (rng.randint(0, 49), rng.randint(0, 49), rng.randint(40, 99))
            ),
            "police_report_filed": rng.random() < 0.7,
            "injuries_reported": rng.random() < 0.2,
            "assessed_value": max(0, int(claimed * rng.uniform(0.6, 1.2))),
            "split": split_of(i, n),
        }
        rows.append({**r, **decide(r)})
    return rows
