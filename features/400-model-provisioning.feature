@p1 @models
Feature: The hive downloads, verifies and catalogs models
  A hive fetches `hf:org/repo:file` and `https://` models itself: HTTP Range resume after an
  interruption or a restart, retries with exponential backoff, a stall timeout, SHA-256
  verification, a disk-space check before the first byte, one download per model however many
  requests ask. Every scenario downloads from a real HTTP server on loopback, a stand-in of the
  Hugging Face hub that injects faults on demand; nothing touches the internet. `hf:` models land
  in the scenario's own Hugging Face cache (`HF_HOME`).

  Background:
    Given a loopback file server that serves the tiny model as "acme/tiny-GGUF" file "tiny.gguf"
    And daemons start with RBEE_DOWNLOAD_BACKOFF_INITIAL_S set to "0.05"
    And daemons start with RBEE_DOWNLOAD_STALL_TIMEOUT_S set to "1"

  Scenario: An hf model downloads with progress events that end in done
    Given a hive on free loopback ports that downloads from the file server
    When I ask the hive to download "hf:acme/tiny-GGUF:tiny.gguf"
    Then the download answer is 202 with a job id
    And the progress stream ends with a "done" event whose SHA-256 matches the served file
    And the hive's catalog lists "hf:acme/tiny-GGUF:tiny.gguf" with the served file's size

  Scenario: An https model downloads over TLS into the catalog
    Given a TLS loopback file server that serves the tiny model at "/models/tiny.gguf"
    And a hive on free loopback ports that trusts the TLS file server
    When I ask the hive to download the TLS file server's "/models/tiny.gguf"
    Then the progress stream ends with a "done" event whose SHA-256 matches the served file

  Scenario: A gated hf model downloads with HF_TOKEN as bearer and the token is never logged
    Given the file server gates "acme/tiny-GGUF" behind the token "hf_test_gate_token_1234"
    And daemons start with HF_TOKEN set to "hf_test_gate_token_1234"
    And a hive on free loopback ports that downloads from the file server
    When I ask the hive to download "hf:acme/tiny-GGUF:tiny.gguf"
    Then the progress stream ends with a "done" event whose SHA-256 matches the served file
    And the file server saw the bearer token "hf_test_gate_token_1234"
    And the hive's log does not contain "hf_test_gate_token_1234"

  Scenario: A download resumes with a Range request after the server resets the connection mid-file
    Given a 3 MB model file served as "acme/big-GGUF" file "big.gguf"
    And the file server resets the connection after 1 MB of "big.gguf" once
    And a hive on free loopback ports that downloads from the file server
    When I ask the hive to download "hf:acme/big-GGUF:big.gguf"
    Then the progress stream ends with a "done" event whose SHA-256 matches the served file
    And the file server got 2 GET requests for "big.gguf", the second with a Range from at least 1 MB

  Scenario: A download interrupted by a hive restart resumes from its partial file
    Given a 3 MB model file served as "acme/big-GGUF" file "big.gguf"
    And the file server sends "big.gguf" at 1 MB/s
    And a hive on free loopback ports that downloads from the file server
    When I ask the hive to download "hf:acme/big-GGUF:big.gguf"
    And the hive has written at least 512 KB of the partial file
    And I kill the hive with SIGKILL
    And I start the hive again on the same data folder
    And the file server sends "big.gguf" at full speed
    And I ask the hive to download "hf:acme/big-GGUF:big.gguf"
    Then the progress stream ends with a "done" event whose SHA-256 matches the served file
    And the last GET request for "big.gguf" carried a Range from the partial file's size

  Scenario: A model the server does not have fails with MODEL_DOWNLOAD_NOT_FOUND and leaves no file
    Given a hive on free loopback ports that downloads from the file server
    When I run rbee models download "hf:acme/tiny-GGUF:missing.gguf"
    Then the command exits with code 1
    And stderr names the error code "MODEL_DOWNLOAD_NOT_FOUND"
    And the hive's models folder holds no partial file

  Scenario: A spawn of a model the hub forbids answers 403 MODEL_DOWNLOAD_FORBIDDEN
    Given the file server gates "acme/tiny-GGUF" behind the token "hf_test_gate_token_1234"
    And a hive on free loopback ports that downloads from the file server
    When I ask the hive to spawn a worker for "hf:acme/tiny-GGUF:tiny.gguf"
    Then the answer is status 403 with error code "MODEL_DOWNLOAD_FORBIDDEN" and a correlation id
    And the hive's models folder holds no partial file

  Scenario: A download that stalls mid-file is retried and completes
    Given a 3 MB model file served as "acme/big-GGUF" file "big.gguf"
    And the file server stalls after 1 MB of "big.gguf" once
    And a hive on free loopback ports that downloads from the file server
    When I ask the hive to download "hf:acme/big-GGUF:big.gguf"
    Then the progress stream ends with a "done" event whose SHA-256 matches the served file
    And the file server got 2 GET requests for "big.gguf", the second with a Range from at least 1 MB

  Scenario: A download that stalls on every attempt fails with MODEL_DOWNLOAD_FAILED after its retries
    Given the file server stalls after 0 MB of "tiny.gguf" every time
    And daemons start with RBEE_DOWNLOAD_RETRIES set to "2"
    And a hive on free loopback ports that downloads from the file server
    When I ask the hive to download "hf:acme/tiny-GGUF:tiny.gguf"
    Then the progress stream ends with an error "MODEL_DOWNLOAD_FAILED" of status 502
    And the file server got 3 GET requests for "tiny.gguf"
    And the hive's models folder holds no partial file

  Scenario: A corrupted download is deleted and fetched again until its SHA-256 matches
    Given the file server corrupts "tiny.gguf" once
    And a hive on free loopback ports that downloads from the file server
    When I ask the hive to download "hf:acme/tiny-GGUF:tiny.gguf"
    Then the progress stream ends with a "done" event whose SHA-256 matches the served file
    And the file server got 2 GET requests for "tiny.gguf", the second without a Range

  Scenario: A file that never matches its digest fails with MODEL_CHECKSUM_MISMATCH and is deleted
    Given daemons start with RBEE_DOWNLOAD_RETRIES set to "1"
    And a hive on free loopback ports that downloads from the file server
    When I ask the hive to download "hf:acme/tiny-GGUF:tiny.gguf" with a wrong SHA-256
    Then the progress stream ends with an error "MODEL_CHECKSUM_MISMATCH" of status 502
    And the file server got 2 GET requests for "tiny.gguf"
    And the hive's models folder holds no model file

  Scenario: A model larger than the free disk space is refused with 507 before any byte is written
    Given a sparse model file larger than the free disk space served as "acme/huge-GGUF" file "huge.gguf"
    And a hive on free loopback ports that downloads from the file server
    When I ask the hive to spawn a worker for "hf:acme/huge-GGUF:huge.gguf"
    Then the answer is status 507 with error code "INSUFFICIENT_DISK" and a correlation id
    And the error details give the disk bytes required and available
    And the hive's models folder holds no partial file

  Scenario: A disk that fills up during a download of unknown size fails with 507 and frees the space
    Given a TLS loopback file server that serves a 3 MB model at "/models/big.gguf"
    And the file server sends "big.gguf" without a Content-Length
    And a hive whose models folder is a 1 MB tmpfs, downloading from the file server
    When I ask the hive to download the TLS file server's "/models/big.gguf"
    Then the progress stream ends with an error "INSUFFICIENT_DISK" of status 507
    And the hive's tmpfs models folder is empty again

  Scenario: Five concurrent spawns of one hf model download it exactly once
    Given a hive on free loopback ports that downloads from the file server
    When 5 clients ask the hive at once to spawn a worker for "hf:acme/tiny-GGUF:tiny.gguf"
    Then all 5 spawn answers are 202
    And the file server got 1 GET request for "tiny.gguf"
    And the hive lists 5 workers in state "idle" within 60 seconds on different ports

  Scenario: rbee models download shows a progress bar and exits 0
    Given a 3 MB model file served as "acme/big-GGUF" file "big.gguf"
    And a hive on free loopback ports that downloads from the file server
    When I run rbee models download "hf:acme/big-GGUF:big.gguf"
    Then the command exits with code 0
    And stderr shows a progress bar that reached 100%
    And stdout names the downloaded file and its SHA-256

  Scenario: rbee models list shows a downloaded model and rbee models rm removes it with its file
    Given a hive on free loopback ports that downloads from the file server
    And the hive has downloaded "hf:acme/tiny-GGUF:tiny.gguf"
    When I run rbee models list
    Then the command exits with code 0
    And stdout lists "hf:acme/tiny-GGUF:tiny.gguf"
    When I run rbee models rm "hf:acme/tiny-GGUF:tiny.gguf"
    Then the command exits with code 0
    And the hive's catalog no longer lists "hf:acme/tiny-GGUF:tiny.gguf"
    And the hive's models folder holds no model file

  Scenario: A corrupt catalog database is moved aside and rebuilt from the downloaded files
    Given a hive on free loopback ports that downloads from the file server
    And the hive has downloaded "hf:acme/tiny-GGUF:tiny.gguf"
    When I stop the hive with SIGTERM
    And I overwrite the hive's catalog database with garbage
    And I start the hive again on the same data folder
    Then the hive's catalog lists "hf:acme/tiny-GGUF:tiny.gguf" with the served file's size
    And the garbage catalog was kept as a backup next to the new one
