@p2 @observability
Feature: Prometheus metrics on every daemon
  Queen, hive and worker serve /metrics (rbee_queen_*, rbee_hive_*, rbee_worker_*); the tests read
  it with prometheus-client's parser and check that each counter moves when its event happens.

  Scenario: A task through the queen moves the request, token and latency metrics of all three daemons
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports
    When I note the queen's metrics
    And I stream a native task through the queen with the queen's token
    Then the queen's metric rbee_queen_http_requests_total{route="/v2/tasks",status="200"} grew by 1
    And the queen's metric rbee_queen_task_duration_seconds_count{outcome="completed"} grew by 1
    And the queen's metric rbee_queen_time_to_first_token_seconds_count grew by 1
    And the queen's metric rbee_queen_queue_wait_seconds_count grew by 1
    And the queen's metric rbee_queen_tokens_generated_total grew by the tokens the stream carried
    And the hive's metric rbee_hive_http_requests_total{route="/v1/workers/spawn",status="202"} is 1
    And the hive's metric rbee_hive_workers{state="idle"} is 1
    And the worker's metric rbee_worker_generations_total is 1
    And the worker's metric rbee_worker_time_to_first_token_seconds_count is 1
    And the worker's metric rbee_worker_tokens_generated_total is the stream's tokens_out
    And the worker's metric rbee_worker_slots is 2
    And the worker's info metric names the backend and the GPU its hive placed it on
    And the hive exports each GPU gauge with one sample per GPU that nvidia-smi lists
    And every metric of each daemon starts with its prefix and no label holds the prompt

  Scenario: Refused requests are counted by reason: missing token, wrong token, no free slot
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports
    When I call GET /v1/models on the queen without a token
    And I call GET /v1/models on the queen without a token
    And I call GET /v1/models on the queen with the token "wrong-token-0123456789abcdef"
    Then the queen's metric rbee_queen_auth_failures_total{reason="MISSING_API_KEY"} is 2
    And the queen's metric rbee_queen_auth_failures_total{reason="INVALID_API_KEY"} is 1
    And the queen's metric rbee_queen_http_requests_total{route="/v1/models",status="401"} is 3

  Scenario: A worker with every slot busy counts the refusal as an admission rejection
    Given a worker serving the tiny model with 1 slot
    And a long generation is streaming from the worker
    When I post an inference to the worker
    Then the answer is status 503 with error code "ALL_SLOTS_BUSY" and a correlation id
    And the worker's metric rbee_worker_admission_rejections_total{reason="ALL_SLOTS_BUSY"} is 1
    And the worker's metric rbee_worker_slots_busy is 1
    And the worker's metric rbee_worker_state{state="busy"} is 1

  Scenario: /metrics needs the daemon's token unless metrics are configured public
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports
    Then GET /metrics on the queen answers 401 without a token
    And GET /metrics on the queen answers 200 with the queen's token

  Scenario: With --metrics-public the queen and the daemons it starts serve /metrics without a token
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports, started with "--metrics-public"
    When I stream a native task through the queen with the queen's token
    Then GET /metrics on the queen answers 200 without a token
    And GET /metrics on the hive answers 200 without a token
    And GET /metrics on the worker answers 200 without a token
    And GET /v2/status on the queen answers 401 without a token

  Scenario: The hive counts a hung worker's forced kill, its restart and the stop that ends it
    Given daemons start with RBEE_FAULTS set to "no-heartbeat"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    And a hive on free loopback ports
    And the hive has a ready worker for the tiny model
    Then the worker is serving again within 20 seconds with 1 restart and a new PID
    And the hive's metric rbee_hive_worker_force_kills_total{reason="missed_heartbeats"} is at least 1
    And the hive's metric rbee_hive_worker_restarts_total is at least 1
    When I ask the hive to stop that worker
    Then the hive's metric rbee_hive_worker_shutdown_duration_seconds_count becomes 1 within 15 seconds

  Scenario: Downloads move the hive's byte and failure counters
    Given a loopback file server that serves the tiny model as "acme/tiny-GGUF" file "tiny.gguf"
    And a hive on free loopback ports that downloads from the file server
    And the hive has downloaded "hf:acme/tiny-GGUF:tiny.gguf"
    When I ask the hive to download "hf:acme/tiny-GGUF:missing.gguf"
    Then the progress stream ends with an error "MODEL_DOWNLOAD_NOT_FOUND" of status 404
    And the hive's metric rbee_hive_download_bytes_total is the tiny model's size
    And the hive's metric rbee_hive_download_failures_total{reason="MODEL_DOWNLOAD_NOT_FOUND"} is 1
    And the hive's metric rbee_hive_downloads_active is 0
