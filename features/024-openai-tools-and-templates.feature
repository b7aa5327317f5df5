@p1 @openai
Feature: Tools, chat templates and limits that follow the model, through real OpenAI clients
  The official `openai` client (sync, async and streaming) and LangChain's `ChatOpenAI` call
  functions through the queen; chat templates of the GGUF are applied as Hugging Face applies
  them, and the model's context, not a character count, bounds a request. The tiny model's
  weights are random: grammar-constrained decoding makes a tool call's structure certain.

  Scenario: A required tool call comes back parseable with finish reason tool_calls
    Given a queen on free loopback ports
    And the tiny model with the Hermes-style chat template
    When the openai client asks for a chat completion whose tool choice is "required"
    Then the answer calls "get_weather" with arguments that match its schema
    And the finish reason is "tool_calls"

  Scenario: A named tool call streams as deltas that reassemble to the same call
    Given a queen on free loopback ports
    And the tiny model with the Hermes-style chat template
    When the openai client streams a chat completion whose tool choice names "get_weather"
    Then the first delta of each call carries its id, type and name with empty arguments
    And the streamed deltas reassemble to a call of "get_weather" with arguments that match its schema
    And the stream's finish reason is "tool_calls"

  Scenario: The async client gets a required call from a model whose template does not know tools
    Given a queen on free loopback ports
    And the tiny model with the plain chat template
    When the async openai client asks for a chat completion whose tool choice is "required"
    Then the answer calls "get_weather" with arguments that match its schema
    And the finish reason is "tool_calls"

  Scenario: A model without a chat template gets the tools in its plain prompt and calls one
    Given a queen on free loopback ports
    When the openai client asks the tiny model without a template for a chat completion whose tool choice is "required"
    Then the answer calls "get_weather" with arguments that match its schema

  Scenario: A conversation that carries a tool call and its result is answered
    Given a queen on free loopback ports
    And the tiny model with the Hermes-style chat template
    When the openai client sends a conversation with an assistant tool call and the tool's result
    Then the completion has one choice with an assistant message

  Scenario: Tool choice none answers in plain text
    Given a queen on free loopback ports
    And the tiny model with the Hermes-style chat template
    When the openai client asks for a chat completion whose tool choice is "none"
    Then the answer calls no tool and has text

  Scenario: The developer role is read as the system role
    Given a queen on free loopback ports
    When the openai client sends the same chat once with a developer and once with a system message
    Then both answers count the same prompt tokens

  Scenario: Text content parts are joined into the message
    Given a queen on free loopback ports
    When the openai client sends a user message as two text parts and as their joined text
    Then both answers count the same prompt tokens

  Scenario: An image content part is refused naming the field
    Given a queen on free loopback ports
    When the openai client sends a user message with an image part
    Then the openai client raised a bad request error with code "INVALID_REQUEST"
    And the openai error names the field "messages.content"

  Scenario: A chat template that raises is a 400 with the template's own message
    Given a queen on free loopback ports
    And the tiny model with the Gemma-style chat template
    When the openai client sends two user messages in a row
    Then the openai client raised a bad request error with code "CHAT_TEMPLATE_ERROR"
    And the openai error message contains "Conversation roles must alternate"

  Scenario: Without max_tokens the answer runs past 128 tokens and stops at the context
    Given a queen on free loopback ports whose workers have a context of 512 tokens
    When the openai client asks for a chat completion without max_tokens that ignores the end of text
    Then the finish reason is "length"
    And the usage counts more than 128 completion tokens and fills the 512-token context

  Scenario: A prompt longer than the context is refused with both counts
    Given a queen on free loopback ports whose workers have a context of 512 tokens
    When the openai client sends a prompt of 2000 words
    Then the openai client raised a bad request error with code "PROMPT_TOO_LONG"
    And the error details count more prompt tokens than the 512 of the context

  Scenario: LangChain's ChatOpenAI with bound tools and a forced choice calls the tool
    Given a queen on free loopback ports
    And the tiny model with the Hermes-style chat template
    When LangChain's ChatOpenAI with "get_weather" bound and forced is invoked
    Then LangChain's message calls "get_weather" with arguments that match its schema

  Scenario: LangChain's structured output through function calling gives the pydantic model
    Given a queen on free loopback ports
    And the tiny model with the Hermes-style chat template
    When LangChain's ChatOpenAI asks for a Weather through with_structured_output
    Then LangChain gave a Weather whose city is one the schema allows
