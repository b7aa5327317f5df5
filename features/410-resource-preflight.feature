@p1 @resources
Feature: Resource preflight before every spawn
  A hive checks RAM, disk, VRAM and the engine's backends before it starts a worker, refuses
  with the figures when they fall short, and runs each worker under a memory limit.

  Scenario: The hive reports its backends and resources
    Given a hive on free loopback ports
    Then GET /v1/backends on the hive lists "cpu" as available and every backend with its detail
    And GET /v1/resources on the hive reports RAM, disk and CPU figures
    And `rbee hive backends` prints "cpu" as available

  Scenario: A model that needs more RAM than the node has is refused with 507 and never spawned
    Given a hive on free loopback ports
    And a GGUF file of 1 TiB (sparse) with the tiny model's header
    When I ask the hive to spawn a worker for that file
    Then the answer is status 507 with error code "INSUFFICIENT_RAM" and a correlation id
    And the error details give at least 1 TiB required and the bytes available
    And the hive lists no worker within 1 seconds
    And the hive started no process

  Scenario: A GPU backend the engine lacks is refused with 400 and never spawned
    Given this node has no usable CUDA backend
    And a hive on free loopback ports
    When I ask the hive to spawn a worker for the tiny model on backend "cuda"
    Then the answer is status 400 with error code "BACKEND_UNAVAILABLE" and a correlation id
    And the hive started no process
    And the hive lists no worker within 1 seconds

  Scenario: A worker spawned with backend auto on a node without a GPU runs on the CPU
    Given this node has no usable CUDA backend
    And a hive on free loopback ports
    When I ask the hive to spawn a worker for the tiny model on backend "auto"
    Then the answer is status 202
    And the worker becomes idle within 30 seconds
    And the hive lists the worker on backend "cpu" with no GPU
    And the worker's process has the address-space limit the hive lists for it
    And the worker's environment hides every GPU

  Scenario: A node whose policy is cpu refuses a cuda worker
    Given a hive on free loopback ports started with "--backend cpu"
    When I ask the hive to spawn a worker for the tiny model on backend "cuda"
    Then the answer is status 400 with error code "BACKEND_UNAVAILABLE" and a correlation id
    And the error details name backend "cuda" and node backend "cpu"
    And the hive started no process

  Scenario: rbee infer on an unavailable GPU backend fails fast without a CPU fallback
    Given a queen on free loopback ports
    When I run rbee infer for the tiny model on backend "cuda"
    Then the command exits with code 1
    And its error output mentions "BACKEND_UNAVAILABLE"
    And the hive lists no worker within 1 seconds

  Scenario: A worker started for a GPU backend the engine lacks exits instead of using the CPU
    When I start a worker for the tiny model with --backend cuda
    Then it exits with code 1 and its message mentions "refusing to fall back to the CPU"

  Scenario: Each worker runs under the memory limit its preflight derived
    Given daemons start with RBEE_FAULTS set to "allocate=8192"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    And a hive on free loopback ports
    When I ask the hive to spawn a worker for the tiny model
    Then the worker becomes idle within 30 seconds
    And the worker's process has the address-space limit the hive lists for it
    When I post an inference request to that worker
    Then the answer is status 500 with error code "INTERNAL" and a correlation id
    And the worker's log shows a MemoryError
    And the worker still answers its health check
