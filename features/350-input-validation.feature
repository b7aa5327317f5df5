@p0 @security @validation
Feature: Every input is validated before use, and bad input is never echoed
  Model refs, prompts, identifiers and numbers are checked in the queen, the hive, the worker
  and the CLI; the answer names the field and the rule, never the offending value.

  Scenario Outline: The queen refuses a bad <field> without echoing it
    Given a queen on free loopback ports
    When I post a native task with <field> set to <value>
    Then the answer is status 400 with error code "INVALID_REQUEST" and a correlation id
    And the error names the field "<field>" and does not echo <value>
    And the queen still answers its health check

    Examples:
      | field       | value                              |
      | model       | "hf:org/repo:../../etc/passwd"     |
      | model       | "default; rm -rf /"                |
      | model       | "$(reboot)"                        |
      | model       | "mod\u00e8le"                      |
      | model       | "https://h.example/%2e%2e/x.gguf"  |
      | model       | "file:///etc/passwd"               |
      | prompt      | "nul \u0000 byte"                  |
      | prompt      | "escape \u001b[31m red"            |
      | prompt      | "bidi \u202e override"             |
      | node        | "bad node!"                        |
      | max_tokens  | 0                                  |
      | max_tokens  | 100000                             |
      | temperature | 3.5                                |
      | top_p       | 2                                  |
      | seed        | -2                                 |

  Scenario: A prompt over the character safety bound is refused with 400
    Given a queen on free loopback ports
    When I post a native task with a prompt of 1000001 characters
    Then the answer is status 400 with error code "INVALID_REQUEST" and a correlation id

  Scenario Outline: The hive refuses a spawn with <field> set to <value>
    Given a hive on free loopback ports
    When I post a spawn with <field> set to <value> to the hive
    Then the answer is status 400 with error code "INVALID_REQUEST" and a correlation id
    And the error names the field "<field>" and does not echo <value>

    Examples:
      | field | value                        |
      | model | "file:///tmp/../etc/x.gguf"  |
      | model | "hf:org/repo:/etc/shadow"    |
      | slots | 0                            |
      | slots | 1000                         |

  Scenario: The worker refuses a prompt with a control character
    Given a worker serving the tiny model with 1 slot
    When I post an inference request with the prompt "bell \u0007" straight to the worker
    Then the answer is status 400 with error code "INVALID_REQUEST" and a correlation id

  Scenario: The CLI refuses a bad model ref without contacting the queen or echoing it
    Given a queen on free loopback ports
    And a relay in front of the queen that counts the connections it is sent
    When I run rbee infer for model "x;reboot" through the relay
    Then the command exits with code 1
    And its error output does not contain "reboot"
    And the relay was sent no connection
    When I run rbee infer for model "file:///nonexistent/model.gguf" through the relay
    Then the relay was sent a connection
