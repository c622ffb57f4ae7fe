// Event Grid → functions, deployed after the code (azure.yaml postdeploy hook, or by hand after
// `func azure functionapp publish`): Azure validates an endpoint when the subscription is
// created, so the functions must exist first.
//
// * deliveries topic → notifications_on_delivery_event (devstack/eventgrid-subscriptions.json
//   is the same subscription for the local stack);
// * storage BlobCreated in payment-files-in → FileValidator's Event Grid-based blob trigger,
//   through the blob extension's webhook (its system key is the host's, read here, never an
//   app setting).

param functionAppName string
param deliveriesTopicName string
param storageSystemTopicName string

resource app 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource deliveries 'Microsoft.EventGrid/topics@2025-02-15' existing = {
  name: deliveriesTopicName
}

resource storageEvents 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: storageSystemTopicName
}

resource notifications 'Microsoft.EventGrid/topics/eventSubscriptions@2025-02-15' = {
  parent: deliveries
  name: 'notifications'
  properties: {
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${app.id}/functions/notifications_on_delivery_event'
        maxEventsPerBatch: 1
      }
    }
    filter: {
      includedEventTypes: [
        'DeliveryShipped'
        'DeliveryFailed'
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

resource paymentFiles 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: storageEvents
  name: 'file-validator'
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${app.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.file_pipeline_validate&code=${listKeys('${app.id}/host/default', '2024-04-01').systemKeys.blobs_extension}'
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/payment-files-in/'
    }
  }
}
