@gpu
Feature: Serving on an NVIDIA GPU
  On a node with a CUDA build of the engine and a GPU, requests that name no backend are served
  on the GPU; each worker sees only its own GPU (CUDA_VISIBLE_DEVICES by UUID) and runs without
  an address-space limit; the VRAM ledger refuses what does not fit before any process starts;
  a hung GPU worker is killed and restarted; a stopped one frees its memory.
  These scenarios need the GPU: `make test-gpu` runs them (docs/gpu.md); `make test` leaves
  them out.

  Scenario: The node reports the CUDA backend as available
    Given a hive on free loopback ports
    Then GET /v1/backends on the hive lists "cuda" as available and every backend with its detail
    And `rbee hive backends` prints "cuda" as available
    And GET /v1/resources on the hive lists every GPU NVML sees with its UUID and memory

  Scenario: An OpenAI chat completion that names no backend is served on the GPU
    Given a queen on free loopback ports
    When the openai client asks for a chat completion of the tiny model with 8 max tokens
    Then the completion has one choice with an assistant message
    And the hive lists one worker on backend "cuda" with a GPU
    And NVML shows the worker's process on its GPU and on no other
    And the worker's environment names its GPU's UUID in CUDA_VISIBLE_DEVICES
    And the worker's process has no address-space limit

  Scenario: The native stream's started event names the GPU it runs on
    Given a queen on free loopback ports
    When I post a native task for the tiny model with prompt "Hello" and 8 max tokens
    Then the answer is an event stream with status 200
    And the started event names backend "cuda" and a device index
    And the last event is "end" with between 1 and 8 tokens out

  Scenario: A model too big for the GPU is refused with 507 before any process starts
    Given a hive on free loopback ports
    And a GGUF file of 1 TiB (sparse) with the tiny model's header
    When I ask the hive to spawn a worker for that file on backend "cuda"
    Then the answer is status 507 with error code "INSUFFICIENT_VRAM" and a correlation id
    And the error details give the bytes the GPU lacks
    And the hive started no process

  Scenario: A hung CUDA worker is killed and restarted on its GPU
    Given daemons start with RBEE_FAULTS set to "stall-after=5"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    And a hive on free loopback ports
    And the hive has a ready worker for the tiny model
    And the hive lists one worker on backend "cuda" with a GPU
    When a generation is started on the worker
    Then the worker is serving again within 30 seconds with 1 restart and a new PID
    And the worker's last kill reason is "decode loop stalled"
    And NVML shows the worker's process on its GPU and on no other

  Scenario: Stopping a GPU worker leaves no process and frees its memory
    Given a hive on free loopback ports
    And GET /v1/backends on the hive lists "cuda" as available and every backend with its detail
    And the GPU memory in use is noted
    And the hive has a ready worker for the tiny model
    And the hive lists one worker on backend "cuda" with a GPU
    Then NVML shows the worker's process on its GPU and on no other
    When I ask the hive to stop the worker
    Then the hive lists no worker within 30 seconds
    And no process the hive started is still running
    And NVML shows no process of the worker and the GPU memory in use is back within 64 MiB

  Scenario: A second model that does not fit the GPU's budget evicts the idle GPU worker and runs on the GPU
    Given daemons start with RBEE_GPU_VRAM_BUDGET_MIB set to "1012"
    And a second model file, a copy of the tiny model
    And a queen on free loopback ports
    And a task of the tiny model on backend "cuda" has been served through the queen
    And the hive's only worker is on the GPU and its VRAM booking fits the budget once, not twice
    When a task of the second model on backend "cuda" streams through the queen
    Then it ends with an "end" event
    And the hive lists only a worker of the second model
    And the hive lists one worker on backend "cuda" with a GPU
    And NVML shows the worker's process on its GPU and on no other
    And NVML shows no process of the first worker
    And the hive's audit log has a "worker.evicted" record for the first worker, the second model and "INSUFFICIENT_VRAM"
    And the hive's metric rbee_hive_worker_evictions_total{reason="INSUFFICIENT_VRAM"} is 1
