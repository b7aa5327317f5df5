@p2 @config
Feature: Daemon configuration files
  Each daemon reads a YAML file given with --config, validated before anything starts; a flag
  beats its RBEE_* variable, which beats the file. `rbee config check` validates a file alone.
  SIGHUP re-reads the file and applies what can change while the daemon runs.

  Scenario: A queen started from a config file serves on the configured port with its data where configured
    Given a queen config file on a free port
    When I start the queen with that config file
    Then the queen serves on the file's port only
    And the queen keeps its audit log in the configured data dir

  Scenario: A hive started from a config file serves on the configured port
    Given a hive config file on a free port
    When I start the hive with that config file
    Then the hive serves on the file's port only

  Scenario: A misspelled key stops the queen with exit 1 naming the file, line and key
    Given a queen config file on a free port
    And the queen config file also sets "prot: 8080"
    When I start `rbee queen` with that config file and wait for it to exit
    Then it exits with code 1 and its message mentions "queen.yaml:4: queen.prot: unknown key (did you mean `port`?)"
    And nothing answers on the file's port and no data dir was created

  Scenario Outline: The <winner> gives the port when <others> also give one
    Given a queen config file on a free port
    When I start the queen with that config file and the port also given by <others>
    Then the queen serves on the <winner>'s port only

    Examples:
      | others                      | winner      |
      | nothing else                | file        |
      | RBEE_QUEEN_PORT             | environment |
      | RBEE_QUEEN_PORT and --port  | flag        |

  Scenario Outline: `rbee config check` accepts the documented <daemon> example
    When I run `rbee config check` on "docs/examples/<daemon>.yaml"
    Then the command exits with code 0
    And stdout says "docs/examples/<daemon>.yaml: ok (<daemon>)"

    Examples:
      | daemon |
      | queen  |
      | hive   |
      | worker |

  Scenario: `rbee config check` lists every problem of a bad file and exits 1
    Given a config file "hive.yaml" holding:
      """
      hive:
        port: 0
        ctx_siz: 4096
        token: inline-secret-0123456789abcdef
        queen_url: ftp://queen
      """
    When I run `rbee config check` on that file
    Then the command exits with code 1
    And stderr names the error code "CONFIG_INVALID"
    And stderr lists exactly these problems of that file:
      | line | key            | problem                                       |
      | 2    | hive.port      | Input should be greater than or equal to 1    |
      | 3    | hive.ctx_siz   | unknown key (did you mean `ctx_size`?)        |
      | 4    | hive.token     | a token is never written in a config file     |
      | 5    | hive.queen_url | must be an http(s) URL of a host and port     |
    And its error output does not contain "inline-secret-0123456789abcdef"

  Scenario: SIGHUP applies a rate limit from the edited file, and lifts it again
    Given a queen started from a config file
    When I call GET /v2/workers/list on the queen 4 times in a row
    Then the answers are 200, 200, 200, 200
    When the queen's config file is edited to "rate_limit_per_s: 0.001, rate_limit_burst: 2" and the queen gets SIGHUP
    And I call GET /v2/workers/list on the queen 4 times in a row
    Then the answers are 200, 200, 429, 429
    When the queen's config file is edited to "rate_limit_per_s: 0" and the queen gets SIGHUP
    And I call GET /v2/workers/list on the queen 4 times in a row
    Then the answers are 200, 200, 200, 200
    And the queen's last config reload applied "rate_limit_per_s" and needed no restart

  Scenario: SIGHUP applies a new log level
    Given a queen started from a config file that sets "log_level: WARNING"
    Then the queen's log has no INFO line
    When the queen's config file is edited to "log_level: INFO" and the queen gets SIGHUP
    Then the queen's log reports "INFO rbee.common.config_reload: config reloaded from"
    And the queen's log reports "applied log_level WARNING -> INFO"

  Scenario: SIGHUP reports a changed port as needing a restart and goes on serving on the old one
    Given a queen started from a config file
    When the queen's config file is edited to another free port and the queen gets SIGHUP
    Then the queen's log reports "not applied, needs a restart: port"
    And the queen's last config reload applied nothing and needed a restart for "port"
    And the queen serves on the file's first port only

  Scenario: An edited file that became invalid keeps the queen serving with its previous settings
    Given a queen started from a config file that sets "rate_limit_per_s: 0.001, rate_limit_burst: 2"
    When the queen's config file is edited to "rate_limit_per_s: 0, rate_limt_burst: 50" and the queen gets SIGHUP
    Then the queen's log reports "failed, keeping the previous settings"
    And the queen's log reports "queen.rate_limt_burst: unknown key (did you mean `rate_limit_burst`?)"
    And the queen still answers its health check
    When I call GET /v2/workers/list on the queen 4 times in a row
    Then the answers are 200, 200, 429, 429
