// Service Bus (Standard) with every queue, topic, subscription and rule taken from ONE topology
// definition: emulators/servicebus/config.json, the file the local emulator loads (Microsoft's
// emulator Config.json shape). Nothing here names an entity, so the two cannot drift apart
// (tests/infra/test_topology.py renders these resources from that file and compares them with
// what the emulator builds from it).

@description('Namespace name (globally unique).')
param name string
param location string
param tags object = {}

var topology = loadJsonContent('../../emulators/servicebus/config.json').UserConfig.Namespaces[0]
var queues = topology.?Queues ?? []
var topics = topology.?Topics ?? []

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    // Entra ID only: the app connects with its managed identity, no SAS key exists to leak.
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = [for q in queues: {
  parent: namespace
  name: q.Name
  properties: {
    lockDuration: q.Properties.?LockDuration
    maxDeliveryCount: q.Properties.?MaxDeliveryCount
    requiresSession: q.Properties.?RequiresSession
    defaultMessageTimeToLive: q.Properties.?DefaultMessageTimeToLive
    deadLetteringOnMessageExpiration: q.Properties.?DeadLetteringOnMessageExpiration
    requiresDuplicateDetection: q.Properties.?RequiresDuplicateDetection
    duplicateDetectionHistoryTimeWindow: q.Properties.?DuplicateDetectionHistoryTimeWindow
    forwardTo: q.Properties.?ForwardTo
    forwardDeadLetteredMessagesTo: q.Properties.?ForwardDeadLetteredMessagesTo
    maxSizeInMegabytes: q.Properties.?MaxSizeInMegabytes
    enableBatchedOperations: q.Properties.?EnableBatchedOperations
    enablePartitioning: q.Properties.?EnablePartitioning
    autoDeleteOnIdle: q.Properties.?AutoDeleteOnIdle
    status: q.Properties.?Status
    userMetadata: q.Properties.?UserMetadata
  }
}]

// A queue named in ForwardTo must exist before the entity that forwards to it.
module topic 'servicebus-topic.bicep' = [for t in topics: {
  name: 'sb-topic-${t.Name}'
  params: {
    namespaceName: namespace.name
    topic: t
  }
  dependsOn: [
    queue
  ]
}]

output name string = namespace.name
output id string = namespace.id
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
