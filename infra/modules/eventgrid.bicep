// The two custom Event Grid topics the app publishes to (CloudEvents 1.0, Entra ID only), and the
// storage account's system topic whose BlobCreated events feed FileValidator's Event Grid-based
// blob trigger. The subscriptions that deliver to functions need the functions to exist, so they
// are declared in event-subscriptions.bicep and deployed after the code (azure.yaml postdeploy).

param location string
param tags object = {}
@description('Event Grid topic names, e.g. [deliveries-xyz, payments-xyz].')
param topicNames array
param storageAccountName string
param systemTopicName string

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = [for t in topicNames: {
  // checkov:skip=CKV_AZURE_193: the app on Flex Consumption without a virtual network publishes over the public endpoint; access is Entra ID only (disableLocalAuth) and the role is per topic
  name: t
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}]

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource storageEvents 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: systemTopicName
  location: location
  tags: tags
  properties: {
    source: storageAccount.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output topicIds array = [for (t, i) in topicNames: topic[i].id]
output topicEndpoints array = [for (t, i) in topicNames: topic[i].properties.endpoint]
output systemTopicName string = storageEvents.name
