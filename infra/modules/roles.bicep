// Least-privilege data-plane roles for the app's managed identity, each on the one resource its
// connection uses. Role ids are Azure's built-in role definitions.

param principalId string
@description('The deploying user (may be empty): blob and table data roles, to drop files and seed.')
param userPrincipalId string = ''
param storageAccountName string
param serviceBusNamespaceName string
param eventGridTopicNames array
param applicationInsightsName string

var roles = {
  // The host keeps its leases, blob receipts and keys in blobs, and Flex Consumption reads the
  // app package with this identity: Microsoft's Functions docs name Storage Blob Data Owner as
  // the role an identity-based AzureWebJobsStorage connection needs. It also covers the app's
  // own containers (Contributor would be enough for those alone).
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // The blob trigger's poison queue (webjobs-blobtrigger-poison) and its Event Grid queue.
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2552a6a8'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

resource topics 'Microsoft.EventGrid/topics@2025-02-15' existing = [for t in eventGridTopicNames: {
  name: t
}]

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource storageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in [roles.storageBlobDataOwner, roles.storageQueueDataContributor, roles.storageTableDataContributor]: {
  name: guid(storage.id, principalId, role)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

resource serviceBusRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in [roles.serviceBusDataSender, roles.serviceBusDataReceiver]: {
  name: guid(serviceBus.id, principalId, role)
  scope: serviceBus
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

resource eventGridRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (t, i) in eventGridTopicNames: {
  name: guid(topics[i].id, principalId, roles.eventGridDataSender)
  scope: topics[i]
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventGridDataSender)
  }
}]

resource telemetryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

var userRoles = empty(userPrincipalId) ? [] : [
  roles.storageBlobDataContributor
  roles.storageTableDataContributor
]

resource userStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in userRoles: {
  name: guid(storage.id, userPrincipalId, role)
  scope: storage
  properties: {
    principalId: userPrincipalId
    principalType: 'User'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]
