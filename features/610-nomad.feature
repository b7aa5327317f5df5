@p2 @deploy
Feature: Deploying rbee with Nomad
  `rbee deploy nomad --check` parses the job files of jobs/nomad/ with python-hcl2 and applies
  rbee's structural rules; `rbee deploy nomad` submits them through the Nomad HTTP API
  (parse, validate, plan, register, follow the evaluation) and prints the allocations. No Nomad
  binary exists on the test machines: the API is a loopback server speaking those endpoints.

  Scenario: The shipped Nomad jobs pass the structural check
    When I run rbee deploy nomad --check on the shipped jobs
    Then the command exits 0 and prints "ok: "
    And the check passed the jobs "rbee-queen" (type service) and "rbee-hive" (type system)
    And the shipped hive job asks the NVIDIA device plugin for 1 GPU per node

  Scenario: A misspelled stanza in a copy of the jobs fails the check and names where it is
    Given a copy of the shipped Nomad jobs with "kill_timeout" misspelled "kill_timout" in the hive
    When I run rbee deploy nomad --check on the copy
    Then the command exits 1 with "NOMAD_CHECK_FAILED" on stderr
    And stderr has "rbee-hive.nomad.hcl: job rbee-hive > group hive > task hive: UNKNOWN_STANZA"
    And stderr has "did you mean `kill_timeout`?"

  Scenario: A hive job that asks for GPUs NVML cannot read fails the check
    Given a copy of the shipped Nomad jobs whose hive asks for "amd/gpu" devices
    When I run rbee deploy nomad --check on the copy
    Then the command exits 1 with "NOMAD_CHECK_FAILED" on stderr
    And stderr has "rbee-hive.nomad.hcl: job rbee-hive > group hive > task hive > device"
    And stderr has "NOT_AN_NVIDIA_GPU: the hive reads GPUs through NVML"

  Scenario: rbee deploy nomad registers both jobs and prints their allocations
    Given a loopback Nomad API with the client nodes "gpu-1" and "gpu-2"
    When I run rbee deploy nomad against the loopback Nomad API
    Then the command exits 0 and prints "rbee-queen: registered (evaluation "
    And the loopback Nomad API has the jobs "rbee-queen" and "rbee-hive" registered
    And stdout shows one queen allocation, then a hive allocation on "gpu-1" and one on "gpu-2"

  Scenario: A Nomad API that requires an ACL token refuses a deploy without one
    Given a loopback Nomad API that requires an ACL token
    When I run rbee deploy nomad against the loopback Nomad API
    Then the command exits 1 with "NOMAD_ACL_TOKEN_REQUIRED" on stderr
    And stderr has "--token-file"
    And the loopback Nomad API has no job registered

  Scenario: The ACL token in a 0600 token file lets the deploy through
    Given a loopback Nomad API that requires an ACL token
    And the ACL token in a file of mode 0600
    When I run rbee deploy nomad against the loopback Nomad API with the token file
    Then the command exits 0 and prints "rbee-hive: registered (evaluation "
    And the loopback Nomad API has the jobs "rbee-queen" and "rbee-hive" registered

  Scenario: A placement no client node can take is reported and nothing is registered
    Given a loopback Nomad API whose client nodes are out of memory
    When I run rbee deploy nomad against the loopback Nomad API
    Then the command exits 1 with "NOMAD_PLACEMENT_FAILED" on stderr
    And stderr has "short of memory; nothing was registered"
    And the loopback Nomad API has no job registered

  Scenario: A deploy to an address where nothing listens says Nomad cannot be reached
    When I run rbee deploy nomad against a loopback port nothing listens on
    Then the command exits 1 with "NOMAD_UNREACHABLE" on stderr
    And stderr has "cannot reach Nomad at http://127.0.0.1:"
