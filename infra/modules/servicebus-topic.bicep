// One topic of the shared topology and its subscriptions (see servicebus.bicep).

param namespaceName string
@description('One element of Topics in emulators/servicebus/config.json.')
param topic object

var subscriptions = topic.?Subscriptions ?? []

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource serviceBusTopic 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' = {
  parent: namespace
  name: topic.Name
  properties: {
    defaultMessageTimeToLive: topic.Properties.?DefaultMessageTimeToLive
    requiresDuplicateDetection: topic.Properties.?RequiresDuplicateDetection
    duplicateDetectionHistoryTimeWindow: topic.Properties.?DuplicateDetectionHistoryTimeWindow
    maxSizeInMegabytes: topic.Properties.?MaxSizeInMegabytes
    enableBatchedOperations: topic.Properties.?EnableBatchedOperations
    enablePartitioning: topic.Properties.?EnablePartitioning
    supportOrdering: topic.Properties.?SupportOrdering
    autoDeleteOnIdle: topic.Properties.?AutoDeleteOnIdle
    status: topic.Properties.?Status
    userMetadata: topic.Properties.?UserMetadata
  }
}

module subscription 'servicebus-subscription.bicep' = [for s in subscriptions: {
  name: 'sb-sub-${topic.Name}-${s.Name}'
  params: {
    namespaceName: namespaceName
    topicName: serviceBusTopic.name
    subscription: s
  }
}]
