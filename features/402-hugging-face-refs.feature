@p1 @models
Feature: Hugging Face refs work the way Hugging Face users expect
  `hf:org/repo[@revision][:file-or-quant]` refs resolve through `huggingface_hub`: quant tags,
  multi-part GGUFs, pinned revisions, the standard Hugging Face cache (shared with
  `huggingface-cli`), `HF_ENDPOINT`, `HF_HUB_OFFLINE` and the token file; a model already on
  the node starts without a request to the hub. Pre-signed `https://` links keep their query
  out of every answer and log line. The hub is a loopback stand-in (`rbee/testing/hub_standin.py`)
  that speaks its HTTP API; nothing touches the internet.

  Background:
    Given a loopback stand-in of the Hugging Face hub
    And daemons start with RBEE_DOWNLOAD_BACKOFF_INITIAL_S set to "0.05"

  Scenario: Two chat requests for hf:org/repo through the queen start one worker and download the model once
    Given the hub stand-in serves the tiny model as "acme/tiny-GGUF" file "tiny-Q4_K_M.gguf"
    And a queen on free loopback ports whose hive uses the hub stand-in
    When the openai client asks twice for a chat completion of "hf:acme/tiny-GGUF"
    Then the hive runs exactly 1 worker, named "hf:acme/tiny-GGUF"
    And the hub stand-in sent the bytes of "tiny-Q4_K_M.gguf" 1 time

  Scenario: A quant tag picks the GGUF whose name has that quant, whatever its case
    Given the hub stand-in serves the tiny model as "acme/tiny-GGUF" file "tiny-Q4_K_M.gguf"
    And the hub stand-in serves another model as "acme/tiny-GGUF" file "tiny-Q8_0.gguf"
    And a hive on free loopback ports that downloads from the file server
    When I ask the hive to download "hf:acme/tiny-GGUF:q4_k_m"
    Then the progress stream ends with a "done" event holding the served "tiny-Q4_K_M.gguf"

  Scenario: A quant tag that no GGUF of the repository has is refused with MODEL_QUANT_NOT_FOUND
    Given the hub stand-in serves the tiny model as "acme/tiny-GGUF" file "tiny-Q4_K_M.gguf"
    And a hive on free loopback ports that downloads from the file server
    When I ask the hive to download "hf:acme/tiny-GGUF:Q5_K_S"
    Then the progress stream ends with an error "MODEL_QUANT_NOT_FOUND" of status 404

  Scenario: A quant tag that several GGUFs of the repository have is refused with MODEL_QUANT_AMBIGUOUS
    Given the hub stand-in serves the tiny model as "acme/tiny-GGUF" file "tiny-Q4_K_M.gguf"
    And the hub stand-in serves another model as "acme/tiny-GGUF" file "tiny-chat-Q4_K_M.gguf"
    And a hive on free loopback ports that downloads from the file server
    When I ask the hive to download "hf:acme/tiny-GGUF:Q4_K_M"
    Then the progress stream ends with an error "MODEL_QUANT_AMBIGUOUS" of status 400

  Scenario: A multi-part GGUF is fetched part by part and a worker loads it from its first part
    Given the hub stand-in serves the tiny model in 4 parts as "acme/split-GGUF" files "tiny-0000N-of-00004.gguf"
    And a hive on free loopback ports that downloads from the file server
    When I ask the hive to spawn a worker for "hf:acme/split-GGUF"
    Then the hive lists the worker in state "idle" within 60 seconds
    And the worker loaded "tiny-00001-of-00004.gguf" from the Hugging Face cache
    And the hub stand-in sent the bytes of each of the 4 parts 1 time

  Scenario: A ref pinned to a commit gets that commit's file after the branch moved on
    Given the hub stand-in serves the tiny model as "acme/tiny-GGUF" file "tiny.gguf"
    And the hub stand-in's branch main of "acme/tiny-GGUF" then gets another "tiny.gguf"
    And a hive on free loopback ports that downloads from the file server
    When I ask the hive to download "tiny.gguf" of "acme/tiny-GGUF" at its first commit
    Then the progress stream ends with a "done" event holding the tiny model

  Scenario: A revision the repository does not have is refused with REVISION_NOT_FOUND
    Given the hub stand-in serves the tiny model as "acme/tiny-GGUF" file "tiny.gguf"
    And a hive on free loopback ports that downloads from the file server
    When I ask the hive to download "hf:acme/tiny-GGUF@v9:tiny.gguf"
    Then the progress stream ends with an error "REVISION_NOT_FOUND" of status 404

  Scenario: A model that huggingface_hub put in the cache starts a worker without a request to the hub
    Given the hub stand-in serves the tiny model as "acme/tiny-GGUF" file "tiny-Q4_K_M.gguf"
    And huggingface_hub has downloaded "tiny-Q4_K_M.gguf" of "acme/tiny-GGUF" into the Hugging Face cache
    And a hive on free loopback ports that downloads from the file server
    When I ask the hive to spawn a worker for "hf:acme/tiny-GGUF:Q4_K_M"
    Then the hive lists the worker in state "idle" within 60 seconds
    And the hub stand-in got no request since the cache was filled

  Scenario: A model the hive downloaded starts again after a restart while the hub is down
    Given the hub stand-in serves the tiny model as "acme/tiny-GGUF" file "tiny-Q4_K_M.gguf"
    And a hive on free loopback ports that downloads from the file server
    And the hive has downloaded "hf:acme/tiny-GGUF"
    When I stop the hive with SIGTERM
    And the hub stand-in stops
    And I start the hive again on the same data folder
    And I ask the hive to spawn a worker for "hf:acme/tiny-GGUF"
    Then the hive lists the worker in state "idle" within 60 seconds

  Scenario: With HF_HUB_OFFLINE a model missing from the cache is refused with MODEL_NOT_CACHED
    Given the hub stand-in serves the tiny model as "acme/tiny-GGUF" file "tiny.gguf"
    And daemons start with HF_HUB_OFFLINE set to "1"
    And a hive on free loopback ports that downloads from the file server
    When I ask the hive to download "hf:acme/tiny-GGUF:tiny.gguf"
    Then the progress stream ends with an error "MODEL_NOT_CACHED" of status 404
    And the hub stand-in got no request at all

  Scenario: The token file in HF_HOME opens a gated repository and is never logged
    Given the hub stand-in serves the tiny model as "acme/tiny-GGUF" file "tiny.gguf"
    And the file server gates "acme/tiny-GGUF" behind the token "hf_token_file_secret_42"
    And the Hugging Face token file holds "hf_token_file_secret_42"
    And a hive on free loopback ports that downloads from the file server
    When I ask the hive to download "hf:acme/tiny-GGUF:tiny.gguf"
    Then the progress stream ends with a "done" event holding the tiny model
    And the file server saw the bearer token "hf_token_file_secret_42"
    And the hive's log does not contain "hf_token_file_secret_42"

  Scenario: HF_ENDPOINT points the hive at another hub
    Given the hub stand-in serves the tiny model as "acme/tiny-GGUF" file "tiny.gguf"
    And a hive on free loopback ports whose HF_ENDPOINT is the hub stand-in
    When I ask the hive to download "hf:acme/tiny-GGUF:tiny.gguf"
    Then the progress stream ends with a "done" event holding the tiny model

  Scenario: A pre-signed https link downloads and its query is shown nowhere
    Given a TLS loopback file server that serves the tiny model at "/bucket/tiny.gguf"
    And a hive on free loopback ports that trusts the TLS file server
    When I ask the hive to download the TLS file server's "/bucket/tiny.gguf?X-Amz-Signature=presigned0secret9&X-Amz-Expires=300"
    Then the progress stream ends with a "done" event holding the tiny model
    And the TLS file server got the query "X-Amz-Signature=presigned0secret9&X-Amz-Expires=300"
    And the hive's catalog lists the TLS file server's "/bucket/tiny.gguf" without a query
    And no answer or progress event of the hive contains "presigned0secret9"
    And the hive's log does not contain "presigned0secret9"
