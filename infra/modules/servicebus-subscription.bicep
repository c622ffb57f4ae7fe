// One subscription of the shared topology and its rules (see servicebus.bicep). Azure gives a
// new subscription the rule $Default (1=1) and removes it when the first rule is added, so a
// subscription with Rules in the topology ends up with exactly those rules, as in the emulator.

param namespaceName string
param topicName string
@description('One element of Topics[].Subscriptions in emulators/servicebus/config.json.')
param subscription object

var rules = subscription.?Rules ?? []

resource topic 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' existing = {
  name: '${namespaceName}/${topicName}'
}

resource serviceBusSubscription 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' = {
  parent: topic
  name: subscription.Name
  properties: {
    lockDuration: subscription.Properties.?LockDuration
    maxDeliveryCount: subscription.Properties.?MaxDeliveryCount
    requiresSession: subscription.Properties.?RequiresSession
    defaultMessageTimeToLive: subscription.Properties.?DefaultMessageTimeToLive
    deadLetteringOnMessageExpiration: subscription.Properties.?DeadLetteringOnMessageExpiration
    deadLetteringOnFilterEvaluationExceptions: subscription.Properties.?DeadLetteringOnFilterEvaluationExceptions
    forwardTo: subscription.Properties.?ForwardTo
    forwardDeadLetteredMessagesTo: subscription.Properties.?ForwardDeadLetteredMessagesTo
    enableBatchedOperations: subscription.Properties.?EnableBatchedOperations
    autoDeleteOnIdle: subscription.Properties.?AutoDeleteOnIdle
    status: subscription.Properties.?Status
    userMetadata: subscription.Properties.?UserMetadata
  }
}

// Config.json says FilterType Sql | Correlation; ARM says SqlFilter | CorrelationFilter.
resource rule 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = [for r in rules: {
  parent: serviceBusSubscription
  name: r.Name
  properties: {
    filterType: '${r.Properties.FilterType}Filter'
    sqlFilter: contains(r.Properties, 'SqlFilter') ? {
      sqlExpression: r.Properties.SqlFilter.SqlExpression
    } : null
    correlationFilter: contains(r.Properties, 'CorrelationFilter') ? {
      correlationId: r.Properties.CorrelationFilter.?CorrelationId
      messageId: r.Properties.CorrelationFilter.?MessageId
      to: r.Properties.CorrelationFilter.?To
      replyTo: r.Properties.CorrelationFilter.?ReplyTo
      label: r.Properties.CorrelationFilter.?Label
      sessionId: r.Properties.CorrelationFilter.?SessionId
      replyToSessionId: r.Properties.CorrelationFilter.?ReplyToSessionId
      contentType: r.Properties.CorrelationFilter.?ContentType
      properties: r.Properties.CorrelationFilter.?Properties
    } : null
    action: contains(r.Properties, 'Action') ? {
      sqlExpression: r.Properties.Action.SqlExpression
    } : null
  }
}]
